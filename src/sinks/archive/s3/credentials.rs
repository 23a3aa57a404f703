//! AWS credentials from the standard chain, in the SDKs' order: the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), the shared files
//! (`~/.aws/credentials` and `~/.aws/config`, profile `AWS_PROFILE` or `default`, static
//! keys), web identity (`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`: STS
//! `AssumeRoleWithWebIdentity`, as for Kubernetes service accounts), and the EC2 instance
//! metadata service (IMDSv2, unless `AWS_EC2_METADATA_DISABLED=true`). Temporary
//! credentials are cached until five minutes before they expire.
//!
//! Not supported (an error says so rather than falling through silently): profiles that
//! assume a role (`role_arn`/`source_profile`), `credential_process` and SSO profiles; the
//! ECS container endpoint. Must not: log a secret key or session token.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

use crate::secret::Secret;

/// One set of credentials.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
    /// When temporary credentials expire.
    pub expires: Option<DateTime<Utc>>,
    /// Where they came from (for logs and `check`): "environment", "profile default"...
    pub source: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("source", &self.source)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// How early temporary credentials are renewed.
const RENEW_BEFORE: chrono::TimeDelta = chrono::TimeDelta::minutes(5);
/// The instance metadata service answers within this or is not there.
const IMDS_TIMEOUT: Duration = Duration::from_secs(2);
const IMDS_DEFAULT: &str = "http://169.254.169.254";
/// The largest credential answer read (STS, IMDS).
const MAX_ANSWER: usize = 64 * 1024;

/// Reads one environment variable.
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The chain, with a cache. `env` reads environment variables (a function, for tests).
pub struct CredentialChain {
    env: EnvLookup,
    region: String,
    http: reqwest::Client,
    cached: Mutex<Option<Credentials>>,
}

impl CredentialChain {
    /// The chain reading the process environment.
    pub fn from_env(region: &str) -> Result<CredentialChain, String> {
        Self::with_env(region, Box::new(|name| std::env::var(name).ok()))
    }

    pub fn with_env(region: &str, env: EnvLookup) -> Result<CredentialChain, String> {
        let tls = crate::config::common::TlsConfig::default();
        let http = crate::http::build_client("credentials", &tls, Duration::from_secs(10))
            .map_err(|e| e.to_string())?;
        Ok(CredentialChain {
            env,
            region: region.to_string(),
            http,
            cached: Mutex::new(None),
        })
    }

    fn var(&self, name: &str) -> Option<String> {
        (self.env)(name).filter(|v| !v.trim().is_empty())
    }

    /// Current credentials (cached while valid).
    pub async fn get(&self) -> Result<Credentials, String> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref()
            && c.expires.is_none_or(|t| t - RENEW_BEFORE > Utc::now())
        {
            return Ok(c.clone());
        }
        let fresh = self.resolve().await?;
        *cached = Some(fresh.clone());
        Ok(fresh)
    }

    /// Forget cached credentials (after the store refused them).
    pub async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn resolve(&self) -> Result<Credentials, String> {
        if let Some(c) = self.environment()? {
            return Ok(c);
        }
        if let Some(c) = self.profile()? {
            return Ok(c);
        }
        if let Some(c) = self.web_identity().await? {
            return Ok(c);
        }
        if self
            .var("AWS_EC2_METADATA_DISABLED")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        {
            return Err(no_credentials("the instance metadata service is disabled"));
        }
        self.instance_metadata()
            .await
            .map_err(|e| no_credentials(&format!("instance metadata: {e}")))
    }

    fn environment(&self) -> Result<Option<Credentials>, String> {
        match (
            self.var("AWS_ACCESS_KEY_ID"),
            self.var("AWS_SECRET_ACCESS_KEY"),
        ) {
            (Some(id), Some(secret)) => Ok(Some(Credentials {
                access_key_id: id.trim().to_string(),
                secret_access_key: Secret::new(secret.trim()),
                session_token: self.var("AWS_SESSION_TOKEN").map(Secret::new),
                expires: None,
                source: "environment".into(),
            })),
            (Some(_), None) => {
                Err("AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not; set both".into())
            }
            (None, Some(_)) => {
                Err("AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not; set both".into())
            }
            (None, None) => Ok(None),
        }
    }

    fn home_file(&self, var: &str, name: &str) -> Option<PathBuf> {
        self.var(var).map(PathBuf::from).or_else(|| {
            self.var("HOME")
                .map(|h| PathBuf::from(h).join(".aws").join(name))
        })
    }

    fn profile(&self) -> Result<Option<Credentials>, String> {
        let profile = self
            .var("AWS_PROFILE")
            .unwrap_or_else(|| "default".to_string());
        let named = self.var("AWS_PROFILE").is_some();
        let mut found = false;
        let files = [
            (
                self.home_file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
                profile.clone(),
            ),
            (
                self.home_file("AWS_CONFIG_FILE", "config"),
                if profile == "default" {
                    "default".to_string()
                } else {
                    format!("profile {profile}")
                },
            ),
        ];
        for (path, section) in files {
            let Some(path) = path else { continue };
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            let Some(keys) = parse_ini(&text).remove(&section) else {
                continue;
            };
            found = true;
            if let (Some(id), Some(secret)) = (
                keys.get("aws_access_key_id"),
                keys.get("aws_secret_access_key"),
            ) {
                return Ok(Some(Credentials {
                    access_key_id: id.clone(),
                    secret_access_key: Secret::new(secret.clone()),
                    session_token: keys.get("aws_session_token").map(Secret::new),
                    expires: None,
                    source: format!("profile {profile} ({})", path.display()),
                }));
            }
            for unsupported in [
                "role_arn",
                "credential_process",
                "sso_start_url",
                "sso_session",
            ] {
                if keys.contains_key(unsupported) {
                    return Err(format!(
                        "AWS profile `{profile}` in {} uses `{unsupported}`, which veeam-siem does not support; give the profile static keys, or use web identity or instance metadata",
                        path.display()
                    ));
                }
            }
        }
        if named && !found {
            return Err(format!(
                "AWS_PROFILE={profile}, but no such profile is in the shared credentials or config file"
            ));
        }
        Ok(None)
    }

    async fn web_identity(&self) -> Result<Option<Credentials>, String> {
        let (Some(token_file), Some(role)) = (
            self.var("AWS_WEB_IDENTITY_TOKEN_FILE"),
            self.var("AWS_ROLE_ARN"),
        ) else {
            return Ok(None);
        };
        let token = std::fs::read_to_string(&token_file)
            .map_err(|e| format!("cannot read AWS_WEB_IDENTITY_TOKEN_FILE {token_file}: {e}"))?;
        let session = self
            .var("AWS_ROLE_SESSION_NAME")
            .unwrap_or_else(|| format!("veeam-siem-{}", Utc::now().timestamp()));
        let endpoint = self
            .var("AWS_ENDPOINT_URL_STS")
            .unwrap_or_else(|| format!("https://sts.{}.amazonaws.com", self.region));
        let url = format!("{}/", endpoint.trim_end_matches('/'));
        // AssumeRoleWithWebIdentity is not signed: the token is the proof.
        let form = [
            ("Action", "AssumeRoleWithWebIdentity"),
            ("Version", "2011-06-15"),
            ("RoleArn", role.as_str()),
            ("RoleSessionName", session.as_str()),
            ("WebIdentityToken", token.trim()),
        ];
        let resp = self
            .http
            .post(&url)
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("STS AssumeRoleWithWebIdentity at {url}: {e}"))?;
        let status = resp.status();
        let body = crate::http::read_body_prefix(resp, MAX_ANSWER).await;
        let body = String::from_utf8_lossy(&body);
        if !status.is_success() {
            return Err(format!(
                "STS AssumeRoleWithWebIdentity for {role} answered HTTP {}: {}",
                status.as_u16(),
                super::client::xml_error(&body)
            ));
        }
        let field = |name: &str| {
            xml_text(&body, name)
                .ok_or_else(|| format!("STS AssumeRoleWithWebIdentity answered without <{name}>"))
        };
        Ok(Some(Credentials {
            access_key_id: field("AccessKeyId")?,
            secret_access_key: Secret::new(field("SecretAccessKey")?),
            session_token: Some(Secret::new(field("SessionToken")?)),
            expires: field("Expiration")?.parse().ok(),
            source: format!("web identity ({role})"),
        }))
    }

    async fn instance_metadata(&self) -> Result<Credentials, String> {
        let base = self
            .var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
            .unwrap_or_else(|| IMDS_DEFAULT.to_string());
        let base = base.trim_end_matches('/');
        let token = self
            .http
            .put(format!("{base}/latest/api/token"))
            .header("x-aws-ec2-metadata-token-ttl-seconds", "21600")
            .timeout(IMDS_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("no answer from {base} ({e})"))?;
        if !token.status().is_success() {
            return Err(format!(
                "{base} refused a session token (HTTP {})",
                token.status()
            ));
        }
        let token = String::from_utf8_lossy(&crate::http::read_body_prefix(token, 4096).await)
            .trim()
            .to_string();
        let get = |path: String| {
            self.http
                .get(format!("{base}{path}"))
                .header("x-aws-ec2-metadata-token", &token)
                .timeout(IMDS_TIMEOUT)
                .send()
        };
        let roles = get("/latest/meta-data/iam/security-credentials/".into())
            .await
            .map_err(|e| e.to_string())?;
        if !roles.status().is_success() {
            return Err(format!(
                "the instance has no IAM role (HTTP {} from {base})",
                roles.status()
            ));
        }
        let roles =
            String::from_utf8_lossy(&crate::http::read_body_prefix(roles, 4096).await).to_string();
        let role = roles.lines().next().unwrap_or("").trim().to_string();
        if role.is_empty() {
            return Err("the instance has no IAM role".into());
        }
        let creds = get(format!("/latest/meta-data/iam/security-credentials/{role}"))
            .await
            .map_err(|e| e.to_string())?;
        let body = crate::http::read_body_prefix(creds, MAX_ANSWER).await;
        #[derive(serde::Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Answer {
            access_key_id: String,
            secret_access_key: String,
            token: Option<String>,
            expiration: Option<DateTime<Utc>>,
        }
        let a: Answer = serde_json::from_slice(&body)
            .map_err(|e| format!("unreadable credentials for role {role} ({e})"))?;
        Ok(Credentials {
            access_key_id: a.access_key_id,
            secret_access_key: Secret::new(a.secret_access_key),
            session_token: a.token.map(Secret::new),
            expires: a.expiration,
            source: format!("instance metadata (role {role})"),
        })
    }
}

fn no_credentials(last: &str) -> String {
    format!(
        "no AWS credentials found: not in the environment (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY), no shared profile, no web identity (AWS_WEB_IDENTITY_TOKEN_FILE/AWS_ROLE_ARN), and {last}"
    )
}

/// `[section]` → key → value of an INI file (`#`/`;` comments, keys lower-cased).
fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            section = Some(name);
        } else if let (Some(s), Some((k, v))) = (&section, line.split_once('='))
            && let Some(keys) = out.get_mut(s)
        {
            keys.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    out
}

/// The text of the first `<name>…</name>` element (no entities beyond the five XML ones).
pub fn xml_text(xml: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = start + xml[start..].find(&close)?;
    Some(
        xml[start..end]
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&amp;", "&"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(vars: &[(&str, &str)]) -> CredentialChain {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        CredentialChain::with_env("eu-west-1", Box::new(move |k| vars.get(k).cloned())).unwrap()
    }

    #[tokio::test]
    async fn the_environment_comes_first() {
        let c = chain(&[
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "s3cr3t"),
            ("AWS_SESSION_TOKEN", "tok"),
            ("AWS_PROFILE", "nope"),
        ]);
        let got = c.get().await.unwrap();
        assert_eq!(got.access_key_id, "AKID");
        assert_eq!(got.session_token.unwrap().expose(), "tok");
        assert!(!format!("{:?}", c.get().await.unwrap()).contains("s3cr3t"));
        let half = chain(&[("AWS_ACCESS_KEY_ID", "AKID")])
            .get()
            .await
            .unwrap_err();
        assert!(half.contains("AWS_SECRET_ACCESS_KEY"), "{half}");
    }

    #[tokio::test]
    async fn shared_files_by_profile() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("credentials");
        let config = dir.path().join("config");
        std::fs::write(
            &creds,
            "[default]\naws_access_key_id = DEF\naws_secret_access_key = d\n\n# c\n[audit]\naws_access_key_id=AUD\naws_secret_access_key=a\n",
        )
        .unwrap();
        std::fs::write(
            &config,
            "[profile cfg]\naws_access_key_id = CFG\naws_secret_access_key = c\n[profile role]\nrole_arn = arn:aws:iam::1:role/x\nsource_profile = default\n",
        )
        .unwrap();
        let files = [
            ("AWS_SHARED_CREDENTIALS_FILE", creds.to_str().unwrap()),
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
        ];
        let with = |profile: Option<&str>| {
            let mut v = files.to_vec();
            if let Some(p) = profile {
                v.push(("AWS_PROFILE", p));
            }
            chain(&v)
        };
        assert_eq!(with(None).get().await.unwrap().access_key_id, "DEF");
        assert_eq!(
            with(Some("audit")).get().await.unwrap().access_key_id,
            "AUD"
        );
        assert_eq!(with(Some("cfg")).get().await.unwrap().access_key_id, "CFG");
        let role = with(Some("role")).get().await.unwrap_err();
        assert!(role.contains("role_arn"), "{role}");
        let missing = with(Some("ghost")).get().await.unwrap_err();
        assert!(missing.contains("AWS_PROFILE=ghost"), "{missing}");
    }

    /// IMDSv2 against a local stand-in of the metadata service on loopback.
    #[tokio::test]
    async fn instance_metadata_v2() {
        use axum::Router;
        use axum::http::HeaderMap;
        use axum::routing::{get, put};
        let app = Router::new()
            .route("/latest/api/token", put(|| async { "T0KEN" }))
            .route(
                "/latest/meta-data/iam/security-credentials/",
                get(|h: HeaderMap| async move {
                    if h.get("x-aws-ec2-metadata-token").is_some_and(|v| v == "T0KEN") {
                        Ok("siem-role\n")
                    } else {
                        Err(axum::http::StatusCode::UNAUTHORIZED)
                    }
                }),
            )
            .route(
                "/latest/meta-data/iam/security-credentials/siem-role",
                get(|| async {
                    r#"{"Code":"Success","AccessKeyId":"ASIA1","SecretAccessKey":"x","Token":"t","Expiration":"2099-01-01T00:00:00Z"}"#
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let endpoint = format!("http://{addr}");
        let c = chain(&[
            ("AWS_EC2_METADATA_SERVICE_ENDPOINT", &endpoint),
            ("HOME", "/nonexistent"),
        ]);
        let got = c.get().await.unwrap();
        assert_eq!(got.access_key_id, "ASIA1");
        assert!(got.source.contains("siem-role"), "{}", got.source);
        assert!(got.expires.is_some());
        let off = chain(&[
            ("AWS_EC2_METADATA_DISABLED", "true"),
            ("HOME", "/nonexistent"),
        ]);
        assert!(off.get().await.unwrap_err().contains("no AWS credentials"));
    }

    #[test]
    fn xml_fields() {
        let x = "<R><AccessKeyId>A&amp;B</AccessKeyId><Code>X</Code></R>";
        assert_eq!(xml_text(x, "AccessKeyId").unwrap(), "A&B");
        assert_eq!(xml_text(x, "Missing"), None);
    }
}
