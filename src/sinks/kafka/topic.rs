//! Topic names and templates: `{dataset}` / `{source_id}` placeholders, checked against
//! Kafka's naming rule when configured and when expanded.

#[derive(Debug, Clone, PartialEq, Eq)]
enum TopicPart {
    Literal(String),
    Dataset,
    SourceId,
}

/// A topic name with optional `{dataset}` / `{source_id}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicTemplate {
    parts: Vec<TopicPart>,
}

fn topic_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')
}

/// Kafka's own rule for topic names.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("`{name}` is not a valid topic name"));
    }
    if name.len() > 249 {
        return Err(format!("topic name `{name}` is longer than 249 characters"));
    }
    if let Some(c) = name.chars().find(|&c| !topic_char_ok(c)) {
        return Err(format!(
            "topic name `{name}` contains `{c}`; Kafka allows letters, digits, `.`, `_` and `-`"
        ));
    }
    Ok(())
}

impl TopicTemplate {
    pub fn parse(text: &str) -> Result<TopicTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TopicPart::Literal(rest[..open].to_string()));
            }
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| {
                format!("`{text}`: unterminated `{{`; write e.g. \"veeam.{{dataset}}\"")
            })?;
            parts.push(match &after[..close] {
                "dataset" => TopicPart::Dataset,
                "source_id" => TopicPart::SourceId,
                other => {
                    return Err(format!(
                        "`{text}`: unknown placeholder `{{{other}}}`; use {{dataset}} or {{source_id}}"
                    ));
                }
            });
            rest = &after[close + 1..];
        }
        if !rest.is_empty() {
            parts.push(TopicPart::Literal(rest.to_string()));
        }
        let template = TopicTemplate { parts };
        match template.fixed() {
            Some(name) => check_topic_name(&name)?,
            None => {
                for p in &template.parts {
                    if let TopicPart::Literal(l) = p
                        && let Some(c) = l.chars().find(|&c| !topic_char_ok(c))
                    {
                        return Err(format!(
                            "`{text}` contains `{c}`; Kafka allows letters, digits, `.`, `_` and `-`"
                        ));
                    }
                }
            }
        }
        Ok(template)
    }

    /// The name, if the template has no placeholders.
    pub fn fixed(&self) -> Option<String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TopicPart::Literal(l) => out.push_str(l),
                _ => return None,
            }
        }
        Some(out)
    }

    /// Expand for one event; the result is checked against Kafka's naming rule.
    pub fn render(&self, source_id: &str, dataset: &str) -> Result<String, String> {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                TopicPart::Literal(l) => out.push_str(l),
                TopicPart::Dataset => out.push_str(dataset),
                TopicPart::SourceId => out.push_str(source_id),
            }
        }
        check_topic_name(&out)?;
        Ok(out)
    }
}
