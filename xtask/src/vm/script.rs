//! The shell script a guest runs (inside the host's root, as root): `capmon check` in the
//! probe mode under test, then every privileged test binary with that mode forced, each one's
//! output and exit status written to the share.

use std::path::PathBuf;

use super::{binaries::TestBinary, initramfs::GUEST_SHARE};

/// One guest's work.
pub struct GuestScript<'a> {
    /// The probe mode forced with `CAPMON_PROBE_MODE`.
    pub mode: &'a str,
    /// More environment for the tests.
    pub env: &'a [(&'a str, &'a str)],
    /// The folder for results, relative to the share (`6.1-fexit`).
    pub out: &'a str,
    /// Binaries to run with the tests each skips (`--skip`); empty lists run everything.
    pub binaries: Vec<(&'a TestBinary, Vec<&'a str>)>,
    /// Programs the tests run, at the paths compiled into them: the share's copy is bound
    /// over each.
    pub programs: &'a [(String, PathBuf)],
    /// libtest's `--test-threads`.
    pub threads: u32,
    /// Bound per test binary, in seconds (busybox `timeout`).
    pub binary_timeout: u64,
    /// Whether this guest also runs `capmon-bench`'s probe modes side by side (`bench.txt`).
    pub bench: bool,
}

/// `'text'` for sh.
pub(super) fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

impl GuestScript<'_> {
    pub(super) fn header(&self) -> String {
        let mut s = String::from(
            "# Written by `cargo xtask vm` (xtask/src/vm/script.rs); runs in the guest.\n\
             export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n\
             export HOME=/tmp RUST_BACKTRACE=0\n\
             # libtest's --report-time is unstable: allowed for the test binaries only.\n\
             export RUSTC_BOOTSTRAP=1\n\
             # podman: containers/storage refuses overlay on the guest's tmpfs /var/lib.\n\
             printf '[storage]\\ndriver = \"vfs\"\\nrunroot = \"/run/containers/storage\"\\n\
             graphroot = \"/var/lib/containers/storage\"\\n' > /tmp/storage.conf\n\
             export CONTAINERS_STORAGE_CONF=/tmp/storage.conf\n",
        );
        s.push_str(&format!("export CAPMON_PROBE_MODE={}\n", quote(self.mode)));
        for (name, value) in self.env {
            s.push_str(&format!("export {name}={}\n", quote(value)));
        }
        s.push_str(&format!("S={GUEST_SHARE}\nO=$S/{}\n", self.out));
        s.push_str("cd /tmp\nuname -r > $O/uname\n");
        // For post-mortems of a hung test: the process table (no kernel threads; where each
        // process sleeps in the kernel) every minute.
        s.push_str(
            "( while sleep 60; do echo \"== $(cut -d' ' -f1 /proc/uptime) s\"; \
             ps --ppid 2 -p 2 --deselect -o pid,ppid,stat,etimes,wchan:24,args; done ) \
             > $O/ps.log 2>&1 &\n",
        );
        s
    }

    pub(super) fn bind_programs(&self) -> String {
        let mut s = String::new();
        for (_, path) in self.programs {
            let name = super::binaries::file_name(path);
            s.push_str(&format!(
                "mount --bind $S/bin/{} {}\n",
                quote(&name),
                quote(&path.to_string_lossy())
            ));
        }
        s
    }

    fn run_binary(&self, binary: &TestBinary, skips: &[&str]) -> String {
        let name = quote(&binary.name);
        let mut cmd = format!(
            "timeout -s KILL {} $S/bin/{name} --ignored --show-output --test-threads={} \
             -Z unstable-options --report-time",
            self.binary_timeout, self.threads
        );
        if !skips.is_empty() {
            cmd.push_str(" --exact");
            for t in skips {
                cmd.push_str(&format!(" --skip {}", quote(t)));
            }
        }
        format!(
            "echo \"capmon-vm: {} ($(cut -d' ' -f1 /proc/uptime) s)\" > /dev/console\n\
             {cmd} > $O/{name}.log 2>&1\nrc=$?\necho $rc > $O/{name}.rc\n\
             [ $rc != 137 ] || {{ {}; }} >> $O/{name}.log 2>&1\n",
            binary.name,
            super::leftovers::guest_sh()
        )
    }

    /// The whole script.
    pub fn render(&self) -> String {
        let mut s = self.header();
        s.push_str(&self.bind_programs());
        // A mode this kernel cannot attach fails here, once, with capmon's reason.
        s.push_str(&format!(
            "{} check > $O/check.txt 2>&1\necho $? > $O/check.rc\n",
            self.capmon()
        ));
        s.push_str("if [ \"$(cat $O/check.rc)\" = 0 ]; then\n");
        for (binary, skips) in &self.binaries {
            s.push_str(&self.run_binary(binary, skips));
        }
        if self.bench {
            s.push_str(&format!(
                "echo \"capmon-vm: capmon-bench modes ($(cut -d' ' -f1 /proc/uptime) s)\" \
                 > /dev/console\nCAPMON_BENCH_ONLY=modes timeout -s KILL {} $S/bin/capmon-bench \
                 > $O/bench.txt 2>&1\n",
                self.binary_timeout
            ));
        }
        s.push_str("fi\necho done > $O/done\n");
        s
    }

    fn capmon(&self) -> String {
        self.programs
            .iter()
            .find(|(n, _)| n == "capmon")
            .map(|(_, p)| quote(&p.to_string_lossy()))
            .unwrap_or_else(|| "$S/bin/capmon".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_forces_the_mode_binds_programs_and_skips_by_exact_name() {
        let privileged = TestBinary {
            name: "privileged".into(),
            path: "/w/target/debug/deps/privileged-1".into(),
            tests: vec!["a".into(), "b".into()],
        };
        let programs = [("capmon".to_owned(), PathBuf::from("/w/target/debug/capmon"))];
        let s = GuestScript {
            mode: "kprobe",
            env: &[("CAPMON_TEST_RUNTIME", "crun")],
            out: "6.1-kprobe",
            binaries: vec![(&privileged, vec!["b"])],
            programs: &programs,
            threads: 1,
            binary_timeout: 300,
            bench: true,
        }
        .render();
        assert!(s.contains("export CAPMON_PROBE_MODE='kprobe'\n"), "{s}");
        assert!(s.contains("export CAPMON_TEST_RUNTIME='crun'\n"), "{s}");
        assert!(s.contains("O=$S/6.1-kprobe\n"), "{s}");
        assert!(
            s.contains("mount --bind $S/bin/'capmon' '/w/target/debug/capmon'\n"),
            "{s}"
        );
        assert!(
            s.contains("'/w/target/debug/capmon' check > $O/check.txt"),
            "{s}"
        );
        assert!(
            s.contains(
                "timeout -s KILL 300 $S/bin/'privileged' --ignored --show-output \
                 --test-threads=1 -Z unstable-options --report-time --exact --skip 'b' \
                 > $O/'privileged'.log 2>&1\nrc=$?\necho $rc > $O/'privileged'.rc\n"
            ),
            "{s}"
        );
        // A binary killed at its bound leaves nothing running for the next one.
        assert!(s.contains("[ $rc != 137 ] || { for r in runc crun;"), "{s}");
        assert!(
            s.contains(
                "CAPMON_BENCH_ONLY=modes timeout -s KILL 300 $S/bin/capmon-bench > $O/bench.txt"
            ),
            "{s}"
        );
        assert!(s.ends_with("echo done > $O/done\n"), "{s}");
    }

    #[test]
    fn quotes_survive_single_quotes() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
