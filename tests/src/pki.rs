//! Certificates for the TLS tests, made with the openssl CLI as docs/remote-access.md tells
//! operators to: a CA, a daemon certificate for 127.0.0.1 and localhost, a client certificate,
//! and the bad ones (a client certificate from another CA, an expired one).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A test PKI in its own directory.
pub struct Pki {
    pub dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Pki {
    /// Makes everything under `dir` (created).
    pub fn new(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).expect("create pki dir");
        let pki = Pki {
            dir: dir.to_path_buf(),
        };
        pki.ca("ca");
        pki.ca("other-ca");
        pki.sign(
            "ca",
            "server",
            "localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        pki.sign("ca", "client", "client", "extendedKeyUsage=clientAuth\n");
        pki.sign(
            "other-ca",
            "stranger",
            "client",
            "extendedKeyUsage=clientAuth\n",
        );
        pki.expired_client();
        pki
    }

    /// `<dir>/<name>.pem`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pem"))
    }

    /// `path` as a string, for command lines.
    pub fn arg(&self, name: &str) -> String {
        self.path(name).display().to_string()
    }

    fn ca(&self, name: &str) {
        openssl(
            &self.dir,
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-subj",
                &format!("/CN=Berth test {name}"),
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        );
    }

    /// `<name>.pem` and `<name>-key.pem`, signed by `ca` with the extensions `ext`.
    fn sign(&self, ca: &str, name: &str, cn: &str, ext: &str) {
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).expect("write ext");
        openssl(
            &self.dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}-key.pem"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN={cn}"),
            ],
        );
        openssl(
            &self.dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                &format!("{ca}.pem"),
                "-CAkey",
                &format!("{ca}-key.pem"),
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    }

    /// `expired.pem`: the client's key, signed by the right CA, valid only in 2020
    /// (`openssl ca` is the CLI that sets past dates).
    fn expired_client(&self) {
        let db = self.dir.join("ca-db");
        std::fs::create_dir_all(db.join("new")).expect("ca db");
        std::fs::write(db.join("index.txt"), "").expect("index");
        std::fs::write(db.join("serial"), "1000\n").expect("serial");
        std::fs::write(
            db.join("ca.cnf"),
            "[ca]\ndefault_ca = d\n[d]\ndir = ./ca-db\ndatabase = $dir/index.txt\n\
             new_certs_dir = $dir/new\nserial = $dir/serial\ndefault_md = sha256\n\
             policy = p\n[p]\ncommonName = supplied\n",
        )
        .expect("ca.cnf");
        openssl(
            &self.dir,
            &[
                "ca",
                "-batch",
                "-config",
                "ca-db/ca.cnf",
                "-cert",
                "ca.pem",
                "-keyfile",
                "ca-key.pem",
                "-in",
                "client.csr",
                "-out",
                "expired.pem",
                "-startdate",
                "20200101000000Z",
                "-enddate",
                "20200102000000Z",
                "-extfile",
                "client.ext",
                "-notext",
            ],
        );
    }
}

/// A tcp port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}
