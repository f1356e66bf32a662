//! What to do about etcd that cannot be reached, from the error the client
//! gave. Most of the time members are down or the majority is lost; but a
//! TLS mismatch fails the same way (a broken pipe, a closed connection), and
//! "start the members that are down" sends an operator after the wrong
//! thing, so the TLS cases are named with their flags.

/// How this server speaks to etcd's client port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTls {
    /// Plain HTTP (no `--etcd-ca`).
    Off,
    /// TLS, verifying etcd with `--etcd-ca`, with no client certificate.
    Anonymous,
    /// TLS with a client certificate (`--etcd-cert`, `--etcd-key`).
    WithCertificate,
}

/// The fix for `why` (the client's error text).
pub fn advice(why: &str, tls: ClientTls) -> &'static str {
    let refused = why.contains("onnection refused");
    let certificate = why.contains("invalid peer certificate")
        || why.contains("InvalidCertificate")
        || why.contains("UnknownIssuer");
    let transport = why.contains("transport error")
        || why.contains("broken pipe")
        || why.contains("connection closed");
    if certificate {
        return "etcd's certificate is not one --etcd-ca trusts for this address: pass the CA that signed etcd's --cert-file, and make sure that certificate names the host of the etcd:// URL";
    }
    if refused || !transport {
        return MEMBERS_DOWN;
    }
    match tls {
        ClientTls::Off => "nothing answered etcd's protocol there: if etcd's client port speaks TLS (it runs with --cert-file), pass --etcd-ca, and --etcd-cert and --etcd-key if it runs with --client-cert-auth; else start the etcd members that are down",
        ClientTls::Anonymous => "etcd closed the connection: if it runs with --client-cert-auth it takes only clients with a certificate from its --trusted-ca-file: pass --etcd-cert and --etcd-key; else start the etcd members that are down",
        ClientTls::WithCertificate => "etcd closed the connection: check that --etcd-cert is signed by the CA etcd trusts (its --trusted-ca-file) and --etcd-key is its key; else start the etcd members that are down",
    }
}

const MEMBERS_DOWN: &str = "start the etcd members that are down; the control plane answers again when a majority of them is back";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_mismatches_name_their_flags_and_down_members_do_not() {
        let pipe = "grpc request error: message: \"transport error\", source: BrokenPipe: stream closed because of a broken pipe";
        assert!(advice(pipe, ClientTls::Off).contains("pass --etcd-ca"));
        assert!(advice(pipe, ClientTls::Anonymous).contains("pass --etcd-cert and --etcd-key"));
        assert!(advice(pipe, ClientTls::WithCertificate).contains("--trusted-ca-file"));
        let bad_ca = "message: \"invalid peer certificate: BadSignature\"";
        for tls in [ClientTls::Anonymous, ClientTls::WithCertificate] {
            assert!(advice(bad_ca, tls).contains("signed etcd's --cert-file"));
        }
        let refused = "transport error: tcp connect error: Connection refused (os error 111)";
        assert_eq!(advice(refused, ClientTls::Off), MEMBERS_DOWN);
        assert_eq!(
            advice("etcdserver: no leader", ClientTls::Anonymous),
            MEMBERS_DOWN
        );
        assert_eq!(advice("no answer within 5s", ClientTls::Off), MEMBERS_DOWN);
    }
}
