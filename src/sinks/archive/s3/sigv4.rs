//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) over ring's HMAC-SHA256: the canonical
//! request, the string to sign, the derived signing key and the `Authorization` header.
//! Pure functions; tested against AWS's published example signatures.

use chrono::{DateTime, Utc};
use ring::hmac;

use super::super::hex;
use crate::secret::Secret;

/// The hex SHA-256 of an empty payload.
pub const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// One request to sign. `headers` are the headers to sign, names in any case (`host` must be
/// among them, as sent); `path` is the object path before encoding.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a [(&'a str, &'a str)],
    pub headers: &'a [(&'a str, &'a str)],
    /// Hex SHA-256 of the body (or `UNSIGNED-PAYLOAD`).
    pub payload_sha256: &'a str,
}

/// The key pair that signs (an access key id and its secret).
pub struct Signer<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a Secret,
    pub region: &'a str,
    pub service: &'a str,
}

/// `%XX`-encode everything but the unreserved characters (and `/` when `keep_slash`).
pub fn uri_encode(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        let unreserved = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if unreserved || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// The canonical request and the signed-headers list.
pub fn canonical_request(req: &Request<'_>) -> (String, String) {
    let mut query: Vec<(String, String)> = req
        .query
        .iter()
        .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
        .collect();
    query.sort();
    let query = query
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let mut headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| {
            let value = v.split_whitespace().collect::<Vec<_>>().join(" ");
            (k.to_ascii_lowercase(), value)
        })
        .collect();
    headers.sort_by(|a, b| a.0.cmp(&b.0));
    let mut canonical_headers = String::new();
    let mut names: Vec<&str> = Vec::new();
    for (name, value) in &headers {
        if names.last() == Some(&name.as_str()) {
            // A repeated header: its values joined by commas on one line.
            canonical_headers.pop();
            canonical_headers.push_str(&format!(",{value}\n"));
        } else {
            canonical_headers.push_str(&format!("{name}:{value}\n"));
            names.push(name);
        }
    }
    let signed = names.join(";");
    let path = if req.path.starts_with('/') {
        uri_encode(req.path, true)
    } else {
        format!("/{}", uri_encode(req.path, true))
    };
    (
        format!(
            "{}\n{path}\n{query}\n{canonical_headers}\n{signed}\n{}",
            req.method, req.payload_sha256
        ),
        signed,
    )
}

impl Signer<'_> {
    /// The `Authorization` header value for `req` sent at `time` (which must also be the
    /// request's `x-amz-date`, see [`amz_date`]).
    pub fn authorization(&self, req: &Request<'_>, time: DateTime<Utc>) -> String {
        let (canonical, signed) = canonical_request(req);
        let date = time.format("%Y%m%d").to_string();
        let scope = format!("{date}/{}/{}/aws4_request", self.region, self.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{}\n{scope}\n{}",
            amz_date(time),
            sha256_hex(canonical.as_bytes())
        );
        let secret = format!("AWS4{}", self.secret_access_key.expose());
        let k_date = hmac_sha256(secret.as_bytes(), date.as_bytes());
        let k_region = hmac_sha256(&k_date, self.region.as_bytes());
        let k_service = hmac_sha256(&k_region, self.service.as_bytes());
        let k_signing = hmac_sha256(&k_service, b"aws4_request");
        let signature = hex::encode(&hmac_sha256(&k_signing, to_sign.as_bytes()));
        format!(
            "AWS4-HMAC-SHA256 Credential={}/{scope},SignedHeaders={signed},Signature={signature}",
            self.access_key_id
        )
    }
}

/// The `x-amz-date` form of `time`: `20130524T000000Z`.
pub fn amz_date(time: DateTime<Utc>) -> String {
    time.format("%Y%m%dT%H%M%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> DateTime<Utc> {
        chrono::NaiveDateTime::parse_from_str(text, "%Y%m%dT%H%M%SZ")
            .unwrap()
            .and_utc()
    }

    /// The examples of the S3 API reference ("Signature Calculations for the Authorization
    /// Header: Transferring Payload in a Single Chunk"), with their published signatures.
    #[test]
    fn s3_reference_examples() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        let signer = Signer {
            access_key_id: "AKIAIOSFODNN7EXAMPLE",
            secret_access_key: &secret,
            region: "us-east-1",
            service: "s3",
        };
        let t = time("20130524T000000Z");
        let host = ("host", "examplebucket.s3.amazonaws.com");
        let date = ("x-amz-date", "20130524T000000Z");
        let empty = ("x-amz-content-sha256", EMPTY_SHA256);

        // GET Object with a Range header.
        let get = Request {
            method: "GET",
            path: "/test.txt",
            query: &[],
            headers: &[host, ("Range", "bytes=0-9"), empty, date],
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(
            signer.authorization(&get, t),
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request,SignedHeaders=host;range;x-amz-content-sha256;x-amz-date,Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );

        // PUT Object: a `$` in the key, a Date header and a storage class.
        let body_sha = sha256_hex(b"Welcome to Amazon S3.");
        assert_eq!(
            body_sha,
            "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072"
        );
        let put = Request {
            method: "PUT",
            path: "/test$file.text",
            query: &[],
            headers: &[
                ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                host,
                ("x-amz-content-sha256", &body_sha),
                date,
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
            ],
            payload_sha256: &body_sha,
        };
        let (canonical, _) = canonical_request(&put);
        assert!(
            canonical.starts_with("PUT\n/test%24file.text\n\n"),
            "{canonical}"
        );
        assert!(signer.authorization(&put, t).ends_with(
            "Signature=98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        ));

        // GET Bucket lifecycle: a query parameter without a value.
        let lifecycle = Request {
            method: "GET",
            path: "/",
            query: &[("lifecycle", "")],
            headers: &[host, empty, date],
            payload_sha256: EMPTY_SHA256,
        };
        assert!(signer.authorization(&lifecycle, t).ends_with(
            "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543"
        ));

        // List objects: two query parameters, given out of order.
        let list = Request {
            method: "GET",
            path: "/",
            query: &[("prefix", "J"), ("max-keys", "2")],
            headers: &[host, empty, date],
            payload_sha256: EMPTY_SHA256,
        };
        assert!(signer.authorization(&list, t).ends_with(
            "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        ));
    }

    /// `get-vanilla` of the Signature Version 4 test suite (a generic service).
    #[test]
    fn test_suite_get_vanilla() {
        let secret = Secret::new("wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
        let signer = Signer {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: &secret,
            region: "us-east-1",
            service: "service",
        };
        let req = Request {
            method: "GET",
            path: "/",
            query: &[],
            headers: &[
                ("Host", "example.amazonaws.com"),
                ("X-Amz-Date", "20150830T123600Z"),
            ],
            payload_sha256: EMPTY_SHA256,
        };
        assert_eq!(
            signer.authorization(&req, time("20150830T123600Z")),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
                .replace(", ", ",")
        );
    }

    #[test]
    fn header_values_are_trimmed_and_folded() {
        let req = Request {
            method: "PUT",
            path: "/a b/ü",
            query: &[("x", "a/b")],
            headers: &[("X-Amz-Meta-A", "  one   two "), ("host", "h")],
            payload_sha256: "UNSIGNED-PAYLOAD",
        };
        let (canonical, signed) = canonical_request(&req);
        assert_eq!(signed, "host;x-amz-meta-a");
        assert_eq!(
            canonical,
            "PUT\n/a%20b/%C3%BC\nx=a%2Fb\nhost:h\nx-amz-meta-a:one two\n\nhost;x-amz-meta-a\nUNSIGNED-PAYLOAD"
        );
    }
}
