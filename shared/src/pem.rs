//! Words for PEM errors, shared by the edge (its certificate and key) and the agent (`--ca`).

/// A PEM parse error in words (rustls-pki-types prints markers and lines as byte arrays).
pub fn reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "a block has no \"-----END {}-----\" line",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => {
            format!("malformed line {:?}", String::from_utf8_lossy(line))
        }
        e => e.to_string(),
    }
}
