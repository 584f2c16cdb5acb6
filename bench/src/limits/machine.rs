//! What machine a measurement ran on: CPU, cores, memory, kernel, and the file system and
//! device under the probe directory. Every report carries this, because a figure without its
//! machine cannot be compared with anything.
//!
//! The parsers take the text of `/proc/cpuinfo`, `/proc/meminfo` and `/proc/mounts` as
//! arguments, so they are tested on fixed samples; [`machine_info`] reads the real files.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::disk_irq::{disk_interrupts, DiskInterrupts};

/// The machine and the storage under one directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MachineInfo {
    pub hostname: String,
    /// `PRETTY_NAME` from /etc/os-release, when present.
    pub os: Option<String>,
    pub kernel_release: String,
    pub kernel_version: String,
    pub arch: String,
    /// The first `model name` in /proc/cpuinfo.
    pub cpu_model: Option<String>,
    /// `processor` entries in /proc/cpuinfo.
    pub cpu_logical_count: usize,
    /// CPUs this process may run on (affinity and cgroup limits applied).
    pub cpu_available_count: usize,
    pub memory_total_bytes: Option<u64>,
    pub storage: StorageInfo,
}

/// The file system holding the probe directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StorageInfo {
    pub dir: PathBuf,
    /// statfs `f_type` as hex, and its name when known.
    pub fs_magic: String,
    pub fs_magic_name: Option<String>,
    /// The /proc/mounts entry whose mount point holds `dir`.
    pub mount: Option<MountEntry>,
    /// The completion interrupts of the disk under `dir`, per CPU since boot, when found.
    #[serde(default)]
    pub disk_interrupts: Option<DiskInterrupts>,
}

/// One line of /proc/mounts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    pub device: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub options: String,
}

/// Collects [`MachineInfo`], with the storage facts for `dir`.
pub fn machine_info(dir: &Path) -> anyhow::Result<MachineInfo> {
    let cpuinfo = read_proc("/proc/cpuinfo")?;
    let meminfo = read_proc("/proc/meminfo")?;
    let uname = uname()?;
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|text| parse_os_release_pretty_name(&text));
    Ok(MachineInfo {
        hostname: uname.nodename,
        os,
        kernel_release: uname.release,
        kernel_version: uname.version,
        arch: uname.machine,
        cpu_model: parse_cpu_model(&cpuinfo),
        cpu_logical_count: count_processors(&cpuinfo),
        cpu_available_count: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_total_bytes: parse_mem_total_bytes(&meminfo),
        storage: storage_info(dir)?,
    })
}

/// Storage facts for `dir`: statfs magic and the mount that holds it.
pub fn storage_info(dir: &Path) -> anyhow::Result<StorageInfo> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("resolving {}", dir.display()))?;
    let magic = statfs_magic(&dir)?;
    let mounts = read_proc("/proc/mounts")?;
    let mount = find_mount(&mounts, &dir);
    // Reports are committed: a directory under the one the bench runs in is named relative
    // to it, so that no path of the machine that ran it ends up in the report.
    let shown = std::env::current_dir()
        .and_then(|cwd| cwd.canonicalize())
        .ok()
        .and_then(|cwd| dir.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .map(|p| {
            if p.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                p
            }
        })
        .unwrap_or_else(|| dir.clone());
    Ok(StorageInfo {
        fs_magic: format!("{magic:#x}"),
        fs_magic_name: fs_magic_name(magic).map(str::to_owned),
        mount,
        disk_interrupts: disk_interrupts(&dir),
        dir: shown,
    })
}

fn read_proc(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {path}"))
}

struct Uname {
    nodename: String,
    release: String,
    version: String,
    machine: String,
}

fn uname() -> anyhow::Result<Uname> {
    // SAFETY: utsname is plain old data; all-zero bytes are a valid value.
    let mut raw: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: raw is a valid, writable utsname.
    if unsafe { libc::uname(&mut raw) } != 0 {
        return Err(std::io::Error::last_os_error()).context("uname");
    }
    let field = |chars: &[libc::c_char]| {
        // SAFETY: uname fills each field with a NUL-terminated string inside the array.
        unsafe { CStr::from_ptr(chars.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    Ok(Uname {
        nodename: field(&raw.nodename),
        release: field(&raw.release),
        version: field(&raw.version),
        machine: field(&raw.machine),
    })
}

fn statfs_magic(dir: &Path) -> anyhow::Result<u64> {
    let c_path = CString::new(dir.as_os_str().as_bytes())
        .with_context(|| format!("path {} contains a NUL byte", dir.display()))?;
    // SAFETY: statfs is plain old data; all-zero bytes are a valid value.
    let mut raw: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and raw is a valid, writable statfs.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut raw) } != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statfs {}", dir.display()));
    }
    // f_type is signed on some targets; the magic numbers are 32-bit patterns.
    Ok(raw.f_type as u64 & 0xffff_ffff)
}

/// Names the file systems a probe directory is likely to sit on (statfs(2) magic numbers).
pub fn fs_magic_name(magic: u64) -> Option<&'static str> {
    Some(match magic {
        0xef53 => "ext2/ext3/ext4",
        0x5846_5342 => "xfs",
        0x9123_683e => "btrfs",
        0xf2f5_2010 => "f2fs",
        0x2fc1_2fc1 => "zfs",
        0x0102_1994 => "tmpfs",
        0x794c_7630 => "overlayfs",
        0x6969 => "nfs",
        0x0102_1997 => "9p",
        0x6573_5546 => "fuse",
        _ => return None,
    })
}

/// The first `model name` of /proc/cpuinfo (x86), or `Model`/`CPU part` style fields elsewhere.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Model", "cpu model", "Processor"]
        .iter()
        .find_map(|key| field_value(cpuinfo, key))
}

/// Counts the `processor : N` entries of /proc/cpuinfo.
pub fn count_processors(cpuinfo: &str) -> usize {
    cpuinfo
        .lines()
        .filter(|line| line.split(':').next().map(str::trim) == Some("processor"))
        .count()
}

/// `MemTotal` of /proc/meminfo, in bytes.
pub fn parse_mem_total_bytes(meminfo: &str) -> Option<u64> {
    let value = field_value(meminfo, "MemTotal")?;
    let kib: u64 = value.strip_suffix("kB")?.trim().parse().ok()?;
    kib.checked_mul(1024)
}

fn parse_os_release_pretty_name(os_release: &str) -> Option<String> {
    os_release.lines().find_map(|line| {
        let value = line.strip_prefix("PRETTY_NAME=")?;
        Some(value.trim().trim_matches('"').to_owned())
    })
}

/// The value after `key :` on the first line whose key matches exactly.
fn field_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name.trim() == key).then(|| value.trim().to_owned())
    })
}

/// The /proc/mounts entry with the longest mount point that contains `dir` (which should be
/// canonical). For stacked mounts on the same point the last line wins, as the kernel's view.
pub fn find_mount(mounts: &str, dir: &Path) -> Option<MountEntry> {
    let mut best: Option<MountEntry> = None;
    for line in mounts.lines() {
        let mut fields = line.split_whitespace();
        let (Some(device), Some(mount_point), Some(fs_type), Some(options)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mount_field(mount_point));
        if !dir.starts_with(&mount_point) {
            continue;
        }
        let longer = best.as_ref().is_none_or(|current| {
            mount_point.as_os_str().len() >= current.mount_point.as_os_str().len()
        });
        if longer {
            best = Some(MountEntry {
                device: unescape_mount_field(device),
                mount_point,
                fs_type: fs_type.to_owned(),
                options: options.to_owned(),
            });
        }
    }
    best
}

/// /proc/mounts writes space, tab, newline and backslash as 3-digit octal escapes (`\040`).
fn unescape_mount_field(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes.get(index + 1..index + 4).filter(|digits| {
            bytes[index] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d))
        });
        match escape {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(u8::try_from(value).unwrap_or(b'?'));
                index += 4;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str =
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\n\
                           cpu MHz\t\t: 2450.000\n\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";

    #[test]
    fn parses_cpuinfo() {
        assert_eq!(parse_cpu_model(CPUINFO).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(count_processors(CPUINFO), 2);
    }

    #[test]
    fn parses_meminfo() {
        let meminfo = "MemTotal:       24610036 kB\nMemFree:        1000 kB\n";
        assert_eq!(parse_mem_total_bytes(meminfo), Some(24_610_036 * 1024));
        assert_eq!(parse_mem_total_bytes("MemFree: 1 kB\n"), None);
    }

    #[test]
    fn finds_the_longest_mount() {
        let mounts = "/dev/vda / ext4 rw,relatime 0 0\n\
                      tmpfs /tmp tmpfs rw 0 0\n\
                      /dev/vdb /work/my\\040data xfs rw 0 0\n";
        let found = |dir: &str| find_mount(mounts, Path::new(dir)).map(|m| m.device);
        assert_eq!(found("/work/main/target").as_deref(), Some("/dev/vda"));
        assert_eq!(found("/tmp/x").as_deref(), Some("tmpfs"));
        // /tmpfoo is not under /tmp: mount points match whole components.
        assert_eq!(found("/tmpfoo").as_deref(), Some("/dev/vda"));
        assert_eq!(found("/work/my data/seg").as_deref(), Some("/dev/vdb"));
    }

    #[test]
    fn names_fs_magic() {
        assert_eq!(fs_magic_name(0xef53), Some("ext2/ext3/ext4"));
        assert_eq!(fs_magic_name(0x1234), None);
    }

    #[test]
    fn reads_this_machine() -> anyhow::Result<()> {
        let info = machine_info(Path::new("."))?;
        assert!(info.cpu_available_count >= 1);
        assert!(!info.kernel_release.is_empty());
        // Under the working directory: named relative to it, so reports hold no machine path.
        assert_eq!(info.storage.dir, Path::new("."));
        assert!(info.storage.mount.is_some());
        // Elsewhere: the absolute path.
        let tmp = std::env::temp_dir().canonicalize()?;
        if !tmp.starts_with(std::env::current_dir()?.canonicalize()?) {
            assert_eq!(storage_info(&tmp)?.dir, tmp);
        }
        Ok(())
    }
}
