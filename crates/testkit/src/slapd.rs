//! A throwaway OpenLDAP `slapd` per test (as crates/testkit does for
//! PostgreSQL): its own config, database directory and port, seeded
//! offline with `slapadd`, stopped by its pid when dropped.

use crate::free_port;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=com";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=com";
pub const ROOT_PW: &str = "admin-secret";

const NO_SLAPD: &str = "slapd not found: install the Debian packages `slapd` and `ldap-utils` \
     (.ci/run does)";

pub struct Slapd {
    dir: PathBuf,
    /// `ldap://127.0.0.1:<port>` (StartTLS too when started with TLS).
    pub url: String,
    /// `ldaps://127.0.0.1:<port>`, when started with [`Slapd::start_tls`].
    pub ldaps_url: Option<String>,
}

/// The server certificate and key (PEM) slapd presents over TLS.
pub struct ServerCert<'a> {
    pub cert_pem: &'a str,
    pub key_pem: &'a str,
}

fn find(binary: &str) -> String {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/sbin"] {
        let path = format!("{dir}/{binary}");
        if std::path::Path::new(&path).exists() {
            return path;
        }
    }
    panic!("{NO_SLAPD}");
}

impl Slapd {
    /// Starts slapd with `seed` (LDIF under [`SUFFIX`]) loaded.
    pub fn start(seed: &str) -> Slapd {
        Self::start_with(seed, None)
    }

    /// As [`Slapd::start`], also serving TLS with `cert`: StartTLS on
    /// [`Slapd::url`] and LDAPS on [`Slapd::ldaps_url`].
    pub fn start_tls(seed: &str, cert: &ServerCert<'_>) -> Slapd {
        Self::start_with(seed, Some(cert))
    }

    fn start_with(seed: &str, cert: Option<&ServerCert<'_>>) -> Slapd {
        let dir = std::env::temp_dir().join(format!("roster-slapd-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(dir.join("db")).expect("slapd dir");
        let conf = format!(
            "include /etc/ldap/schema/core.schema\n\
             include /etc/ldap/schema/cosine.schema\n\
             include /etc/ldap/schema/inetorgperson.schema\n\
             include /etc/ldap/schema/nis.schema\n\
             pidfile {dir}/slapd.pid\n\
             modulepath /usr/lib/ldap\n\
             moduleload back_mdb\n\
             sizelimit unlimited\n\
             database mdb\n\
             maxsize 1073741824\n\
             suffix \"{SUFFIX}\"\n\
             rootdn \"{ROOT_DN}\"\n\
             rootpw {ROOT_PW}\n\
             directory {dir}/db\n",
            dir = dir.display()
        );
        let tls = match cert {
            Some(cert) => {
                std::fs::write(dir.join("server.crt"), cert.cert_pem).expect("server.crt");
                std::fs::write(dir.join("server.key"), cert.key_pem).expect("server.key");
                format!(
                    "TLSCertificateFile {dir}/server.crt\n\
                     TLSCertificateKeyFile {dir}/server.key\n",
                    dir = dir.display()
                )
            }
            None => String::new(),
        };
        // Global directives (TLS) go before the first `database`.
        let conf = conf.replacen("database mdb\n", &format!("{tls}database mdb\n"), 1);
        std::fs::write(dir.join("slapd.conf"), conf).expect("slapd.conf");
        std::fs::write(dir.join("seed.ldif"), seed).expect("seed.ldif");
        let conf = dir.join("slapd.conf");
        let status = Command::new(find("slapadd"))
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(dir.join("seed.ldif"))
            .arg("-q")
            .status()
            .expect(NO_SLAPD);
        assert!(status.success(), "slapadd failed");
        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        let ldaps = cert.map(|_| free_port());
        let ldaps_url = ldaps.map(|port| format!("ldaps://127.0.0.1:{port}"));
        let listeners: Vec<String> = [Some(&url), ldaps_url.as_ref()]
            .into_iter()
            .flatten()
            .map(|url| format!("{url}/"))
            .collect();
        let status = Command::new(find("slapd"))
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(listeners.join(" "))
            .status()
            .expect(NO_SLAPD);
        assert!(status.success(), "slapd did not start");
        let slapd = Slapd {
            dir,
            url,
            ldaps_url,
        };
        for port in [Some(port), ldaps].into_iter().flatten() {
            slapd.wait_until_accepting(port);
        }
        slapd
    }

    fn wait_until_accepting(&self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "slapd never accepted connections"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Applies an LDIF change set as the root DN (`ldapmodify`).
    pub fn modify(&self, ldif: &str) {
        let mut child = Command::new(find("ldapmodify"))
            .args(["-x", "-H", &self.url, "-D", ROOT_DN, "-w", ROOT_PW])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("ldapmodify (ldap-utils)");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write LDIF");
        assert!(
            child.wait().expect("ldapmodify").success(),
            "ldapmodify failed:\n{ldif}"
        );
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("slapd.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The base entries, then `body`.
pub fn seed(body: &str) -> String {
    format!(
        "dn: {SUFFIX}\nobjectClass: dcObject\nobjectClass: organization\ndc: example\no: Example\n\n\
         dn: ou=people,{SUFFIX}\nobjectClass: organizationalUnit\nou: people\n\n\
         dn: ou=groups,{SUFFIX}\nobjectClass: organizationalUnit\nou: groups\n\n{body}"
    )
}

/// An inetOrgPerson under ou=people.
pub fn person(uid: &str, given: &str, sn: &str) -> String {
    format!(
        "dn: uid={uid},ou=people,{SUFFIX}\nobjectClass: inetOrgPerson\nuid: {uid}\n\
         cn: {given} {sn}\ngivenName: {given}\nsn: {sn}\nmail: {uid}@example.com\n\n"
    )
}
