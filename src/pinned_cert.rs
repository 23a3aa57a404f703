//! Trusting a self-signed server certificate named in `tls.ca_file` even when it is marked
//! as a CA (`basicConstraints: CA:TRUE`, what `openssl req -x509` writes by default, and
//! what many appliance wizards generate).
//!
//! Owns: [`CaFileVerifier`], the server-certificate check of every TLS client of ours. It
//! asks webpki first (system roots plus `ca_file`); webpki refuses a certificate that is a
//! CA as the server's own (`CaUsedAsEndEntity`), even one the user put in `ca_file` to
//! trust that very server. Only for that refusal, and only when the server's certificate is
//! byte for byte one of `ca_file`'s, it is accepted, after the checks webpki had not yet
//! made: the name the client connects to, and the validity period. Every other refusal
//! stands. Must not: widen trust beyond an exact certificate the user listed.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};

/// webpki's verifier, plus exact trust in the certificates of `ca_file`.
#[derive(Debug)]
pub struct CaFileVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl CaFileVerifier {
    pub fn new(webpki: Arc<WebPkiServerVerifier>, pinned: Vec<CertificateDer<'static>>) -> Self {
        CaFileVerifier { webpki, pinned }
    }
}

/// Whether webpki refused `error`'s certificate only for being a CA.
fn is_ca_used_as_end_entity(error: &rustls::Error) -> bool {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let error =
            match self
                .webpki
                .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            {
                Ok(verified) => return Ok(verified),
                Err(error) => error,
            };
        if !is_ca_used_as_end_entity(&error)
            || !self
                .pinned
                .iter()
                .any(|p| p.as_ref() == end_entity.as_ref())
        {
            return Err(error);
        }
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        cert.verify_is_valid_for_subject_name(server_name)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::NotValidForName))?;
        let (not_before, not_after) = validity(end_entity.as_ref()).ok_or(
            rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
        )?;
        let now = now.as_secs() as i64;
        if now < not_before {
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidYet,
            ));
        }
        if now > not_after {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// One DER element: (tag, content, rest).
fn element(der: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// A certificate's validity period (`notBefore`, `notAfter`) in Unix seconds.
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    const SEQUENCE: u8 = 0x30;
    let (tag, certificate, _) = element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, tbs, _) = element(certificate)?;
    if tag != SEQUENCE {
        return None;
    }
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, then validity.
    let (tag, _, after) = element(rest)?;
    if tag == 0xa0 {
        rest = after;
    }
    for _ in 0..3 {
        rest = element(rest)?.2;
    }
    let (tag, validity, _) = element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, not_before, rest) = element(validity)?;
    let not_before = asn1_time(tag, not_before)?;
    let (tag, not_after, _) = element(rest)?;
    Some((not_before, asn1_time(tag, not_after)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`, years 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn asn1_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if text.len() == 12 => {
            let yy: i32 = text[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| rest.get(i..i + 2)?.parse::<u32>().ok();
    let date = chrono::NaiveDate::from_ymd_opt(year, field(0)?, field(2)?)?;
    let time = date.and_hms_opt(field(4)?, field(6)?, field(8)?)?;
    Some(time.and_utc().timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(ca: bool, name: &str, days: (i64, i64)) -> CertificateDer<'static> {
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).unwrap();
        if ca {
            params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        }
        let day = |offset: i64| {
            use chrono::Datelike;
            let d = (chrono::Utc::now() + chrono::Duration::days(offset)).date_naive();
            rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
        };
        params.not_before = day(days.0);
        params.not_after = day(days.1);
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().clone()
    }

    fn verifier(pinned: &CertificateDer<'static>) -> CaFileVerifier {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(pinned.clone()).unwrap();
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .unwrap();
        CaFileVerifier::new(webpki, vec![pinned.clone()])
    }

    fn check(v: &CaFileVerifier, cert: &CertificateDer<'_>, name: &str) -> Result<(), String> {
        v.verify_server_cert(
            cert,
            &[],
            &ServerName::try_from(name.to_string()).unwrap(),
            &[],
            UnixTime::now(),
        )
        .map(|_| ())
        .map_err(|e| format!("{e:?}"))
    }

    /// The certificate `openssl req -x509` makes (CA:TRUE), listed in `ca_file`: trusted
    /// for its own name while valid; any other certificate, name or time is refused.
    #[test]
    fn a_self_signed_ca_certificate_in_ca_file_is_trusted_as_itself() {
        let cert = self_signed(true, "vbo.example.net", (-1, 30));
        let v = verifier(&cert);
        assert_eq!(check(&v, &cert, "vbo.example.net"), Ok(()));
        let e = check(&v, &cert, "other.example.net").unwrap_err();
        assert!(e.contains("NotValidForName"), "{e}");
        // Another such certificate for the same name: not the one listed, refused.
        let other = self_signed(true, "vbo.example.net", (-1, 30));
        assert!(check(&v, &other, "vbo.example.net").is_err());

        let expired = self_signed(true, "vbo.example.net", (-30, -1));
        let e = check(&verifier(&expired), &expired, "vbo.example.net").unwrap_err();
        assert!(e.contains("Expired"), "{e}");
        let early = self_signed(true, "vbo.example.net", (2, 30));
        let e = check(&verifier(&early), &early, "vbo.example.net").unwrap_err();
        assert!(e.contains("NotValidYet"), "{e}");

        // A plain (CA:FALSE) self-signed certificate: webpki's own answer.
        let plain = self_signed(false, "vbo.example.net", (-1, 30));
        assert_eq!(check(&verifier(&plain), &plain, "vbo.example.net"), Ok(()));
    }

    #[test]
    fn validity_is_read_from_der() {
        let cert = self_signed(false, "x", (-1, 30));
        let (from, to) = validity(cert.as_ref()).unwrap();
        let now = UnixTime::now().as_secs() as i64;
        assert!(from < now && now < to && to - from > 30 * 86_400 - 10);
        assert_eq!(asn1_time(0x17, b"491231235959Z"), Some(2_524_607_999));
        assert_eq!(asn1_time(0x18, b"20500101000000Z"), Some(2_524_608_000));
        assert_eq!(asn1_time(0x17, b"4912312359Z"), None);
        assert_eq!(validity(b"\x30\x03\x02\x01"), None);
    }
}
