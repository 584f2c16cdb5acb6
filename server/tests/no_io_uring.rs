//! Where io_uring is denied (Docker's default seccomp profile does it), keel starts on the
//! pwrite backend with one clear line in its log, serves produce and fetch, and keeps its
//! data across a restart; a backend that needs io_uring, named explicitly, is refused at start
//! with a message saying why.
//!
//! The broker runs under a seccomp filter installed in the child between fork and exec: it
//! answers io_uring_setup, io_uring_enter and io_uring_register with EPERM, as Docker's profile
//! does, and allows every other system call.

mod common;

use std::{os::unix::process::CommandExt, process::Command};

use common::{batch, values, Broker, TestResult};

/// io_uring_setup, io_uring_enter, io_uring_register: the same numbers on x86_64 and aarch64
/// (system calls added since 5.1 share one numbering across architectures).
const IO_URING_SYSCALLS: [u32; 3] = [425, 426, 427];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64

// Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
// Offsets in struct seccomp_data: nr (u32) at 0, arch (u32) at 4.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_JEQ_K,
        jt,
        jf,
        k,
    }
}

/// The filter program:
/// ```text
///   0  load arch;   if arch != ours goto allow
///   2  load nr;     if nr is one of the three io_uring calls goto deny
///   6  allow:  return ALLOW
///   7  deny:   return ERRNO(EPERM)
/// ```
fn filter() -> Vec<libc::sock_filter> {
    let [a, b, c] = IO_URING_SYSCALLS;
    vec![
        stmt(BPF_LD_W_ABS, DATA_ARCH),
        jump(AUDIT_ARCH, 0, 4),
        stmt(BPF_LD_W_ABS, DATA_NR),
        jump(a, 3, 0),
        jump(b, 2, 0),
        jump(c, 1, 0),
        stmt(BPF_RET_K, SECCOMP_RET_ALLOW),
        stmt(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ]
}

/// Makes the command's process start with io_uring denied.
fn deny_io_uring(command: &mut Command) {
    let program = filter();
    // The env var would name a backend for the broker; these tests want its own choice.
    command.env_remove("KEEL_IO_BACKEND");
    // SAFETY: the hook runs in the forked child before exec and only makes two prctl calls
    // (async-signal-safe) on memory the closure owns.
    unsafe {
        command.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &raw const prog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[test]
fn without_io_uring_the_broker_falls_back_to_pwrite_and_keeps_its_data() -> TestResult {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("data");
    let mut broker = Broker::start_with(&data, tmp.path(), &["--fsync", "always"], deny_io_uring)?;
    let log = broker.log_text();
    let fallback: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("io_uring cannot be set up here"))
        .collect();
    assert_eq!(
        fallback.len(),
        1,
        "one clear line about the fallback:\n{log}"
    );
    assert!(
        fallback[0].contains("Operation not permitted"),
        "the line gives the reason: {}",
        fallback[0]
    );
    assert!(log.contains("io_backend=pwrite"), "{log}");

    let mut c = broker.client()?;
    c.create_topic("denied", 2)?;
    for p in 0..2 {
        let r = c.produce(9, "denied", p, batch(&["one", "two"])?)?;
        assert_eq!((r.error_code, r.base_offset), (0, 0));
    }
    let f = c.fetch(11, "denied", 1, 0, 100)?;
    assert_eq!(values(&f.records.unwrap_or_default())?, ["one", "two"]);
    assert!(broker.stop()?.success(), "{}", broker.log_text());

    // The same data dir again, still without io_uring: the log recovered by pwrite is whole.
    let broker = Broker::start_with(&data, tmp.path(), &[], deny_io_uring)?;
    let mut c = broker.client()?;
    let f = c.fetch(11, "denied", 0, 0, 100)?;
    assert_eq!(f.high_watermark, 2);
    assert_eq!(values(&f.records.unwrap_or_default())?, ["one", "two"]);
    Ok(())
}

#[test]
fn a_named_io_uring_backend_without_io_uring_is_refused_clearly() -> TestResult {
    for backend in ["glommio", "uring"] {
        let tmp = tempfile::tempdir()?;
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command
            .args(["--listen", "127.0.0.1:0", "--io-backend", backend])
            .arg("--data-dir")
            .arg(tmp.path().join("data"));
        deny_io_uring(&mut command);
        let out = command.output()?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{backend}: must not start:\n{stderr}"
        );
        assert!(
            stderr.contains(&format!("--io-backend {backend} needs io_uring"))
                && stderr.contains("--io-backend pwrite"),
            "{backend}: the error says why and what to do:\n{stderr}"
        );
    }
    Ok(())
}
