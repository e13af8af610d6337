//! POSIX scenarios, run against every mount configuration.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use crate::common::{check, cpath, errno_of, run_scenarios, MountGuard, Scenario};

const SCENARIOS: &[Scenario] = &[
    ("read_write_append", read_write_append),
    ("sparse_and_large", sparse_and_large),
    ("unlinked_file_stays_open", unlinked_file_stays_open),
    ("rename_rules", rename_rules),
    ("rename_flags", rename_flags),
    ("links_and_symlinks", links_and_symlinks),
    ("directory_listing", directory_listing),
    ("modes_owners_times", modes_owners_times),
    ("xattrs", xattrs),
    ("fallocate_and_seek", fallocate_and_seek),
    ("copy_file_range", copy_file_range),
    ("special_files", special_files),
    ("exclusive_create", exclusive_create),
    ("no_stale_reads_across_processes", no_stale_reads_across_processes),
    ("error_numbers", error_numbers),
];

#[test]
fn posix_scenarios_default_options() {
    let m = MountGuard::new("");
    run_scenarios("default", m.path(), SCENARIOS);
}

#[test]
fn posix_scenarios_small_limits() {
    let m = MountGuard::new("size=256m,nr_inodes=10000,mode=1777");
    run_scenarios("small", m.path(), SCENARIOS);
}

fn read_write_append(d: &Path) {
    let p = d.join("f");
    fs::write(&p, b"hello").unwrap();
    let mut f = OpenOptions::new().append(true).open(&p).unwrap();
    f.write_all(b" world").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"hello world");
    let f = OpenOptions::new().read(true).write(true).open(&p).unwrap();
    f.write_all_at(b"J", 0).unwrap();
    let mut buf = [0; 5];
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"Jello");
    // A multi-megabyte write in one call, read back in pieces.
    let big: Vec<u8> = (0..5_000_000u32).map(|i| (i % 251) as u8).collect();
    fs::write(&p, &big).unwrap();
    let mut back = Vec::new();
    File::open(&p).unwrap().read_to_end(&mut back).unwrap();
    assert!(back == big);
    f.set_len(10).unwrap();
    assert_eq!(fs::read(&p).unwrap(), &big[..10]);
}

fn sparse_and_large(d: &Path) {
    let p = d.join("sparse");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all_at(b"end", 1 << 40).unwrap();
    let md = f.metadata().unwrap();
    assert_eq!(md.len(), (1 << 40) + 3);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "a sparse write allocated {} blocks",
        md.blocks()
    );
    let mut buf = [1u8; 8];
    f.read_exact_at(&mut buf, (1 << 40) - 5).unwrap();
    assert_eq!(&buf, b"\0\0\0\0\0end");
}

fn unlinked_file_stays_open(d: &Path) {
    let p = d.join("gone");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all(b"data after unlink").unwrap();
    fs::remove_file(&p).unwrap();
    assert!(!p.exists());
    let md = f.metadata().unwrap();
    assert_eq!(md.nlink(), 0);
    assert_eq!(md.len(), 17);
    f.write_all(b"!").unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    let mut s = String::new();
    f.read_to_string(&mut s).unwrap();
    assert_eq!(s, "data after unlink!");
}

fn rename_rules(d: &Path) {
    fs::create_dir_all(d.join("a/b")).unwrap();
    fs::write(d.join("f"), b"1").unwrap();
    fs::write(d.join("g"), b"2").unwrap();
    fs::rename(d.join("f"), d.join("g")).unwrap();
    assert_eq!(fs::read(d.join("g")).unwrap(), b"1");
    assert_eq!(errno_of(fs::rename(d.join("a"), d.join("a/b/c"))), libc::EINVAL);
    assert_eq!(errno_of(fs::rename(d.join("g"), d.join("a"))), libc::EISDIR);
    assert_eq!(errno_of(fs::rename(d.join("a"), d.join("g"))), libc::ENOTDIR);
    fs::create_dir(d.join("e")).unwrap();
    assert_eq!(errno_of(fs::rename(d.join("e"), d.join("a"))), libc::ENOTEMPTY);
    fs::rename(d.join("a"), d.join("e")).unwrap();
    assert!(d.join("e/b").is_dir());
    fs::rename(d.join("e/b"), d.join("b2")).unwrap();
    assert_eq!(fs::metadata(d.join("e")).unwrap().nlink(), 2);
}

fn rename_flags(d: &Path) {
    fs::write(d.join("x"), b"x").unwrap();
    fs::write(d.join("y"), b"y").unwrap();
    let rename2 = |a: &str, b: &str, flags: libc::c_uint| {
        // SAFETY: valid paths; renameat2 takes plain integers otherwise.
        check(unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                cpath(&d.join(a)).as_ptr(),
                libc::AT_FDCWD,
                cpath(&d.join(b)).as_ptr(),
                flags,
            )
        })
    };
    assert_eq!(errno_of(rename2("x", "y", libc::RENAME_NOREPLACE)), libc::EEXIST);
    rename2("x", "y", libc::RENAME_EXCHANGE).unwrap();
    assert_eq!(fs::read(d.join("x")).unwrap(), b"y");
    assert_eq!(fs::read(d.join("y")).unwrap(), b"x");
    rename2("x", "z", libc::RENAME_NOREPLACE).unwrap();
    assert!(!d.join("x").exists());
}

fn links_and_symlinks(d: &Path) {
    fs::write(d.join("t"), b"target").unwrap();
    fs::hard_link(d.join("t"), d.join("h")).unwrap();
    assert_eq!(fs::metadata(d.join("t")).unwrap().nlink(), 2);
    assert_eq!(
        fs::metadata(d.join("t")).unwrap().ino(),
        fs::metadata(d.join("h")).unwrap().ino()
    );
    std::os::unix::fs::symlink("t", d.join("s")).unwrap();
    assert_eq!(fs::read_link(d.join("s")).unwrap(), Path::new("t"));
    assert_eq!(fs::read(d.join("s")).unwrap(), b"target");
    assert!(fs::symlink_metadata(d.join("s")).unwrap().file_type().is_symlink());
    fs::remove_file(d.join("t")).unwrap();
    assert_eq!(fs::read(d.join("h")).unwrap(), b"target");
    assert!(fs::metadata(d.join("s")).is_err());
    assert_eq!(errno_of(fs::hard_link(d, d.join("dirlink"))), libc::EPERM);
}

fn directory_listing(d: &Path) {
    for i in 0..3000 {
        File::create(d.join(format!("entry-{i:05}"))).unwrap();
    }
    let mut names: Vec<String> = fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3000);
    assert_eq!(names[0], "entry-00000");
    // Delete every other entry while listing; nothing that stays is lost.
    let mut seen = std::collections::HashSet::new();
    for (i, e) in fs::read_dir(d).unwrap().enumerate() {
        let name = e.unwrap().file_name().into_string().unwrap();
        assert!(seen.insert(name.clone()), "{name} listed twice");
        if i % 2 == 0 {
            let n: usize = name[6..].parse().unwrap();
            let victim = format!("entry-{:05}", (n + 1500) % 3000);
            let _ = fs::remove_file(d.join(victim));
        }
    }
    let out = Command::new("ls").arg("-la").arg(d).output().unwrap();
    assert!(out.status.success());
    for e in fs::read_dir(d).unwrap() {
        fs::remove_file(e.unwrap().path()).unwrap();
    }
    assert_eq!(fs::read_dir(d).unwrap().count(), 0);
}

fn modes_owners_times(d: &Path) {
    let p = d.join("m");
    fs::write(&p, b"").unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o4640)).unwrap();
    assert_eq!(fs::metadata(&p).unwrap().mode() & 0o7777, 0o4640);
    std::os::unix::fs::chown(&p, Some(1234), Some(5678)).unwrap();
    let md = fs::metadata(&p).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    assert_eq!(md.mode() & 0o7000, 0, "chown must clear set-id bits");
    // utimensat with a fixed atime and UTIME_OMIT for mtime.
    let before = fs::metadata(&p).unwrap();
    let ts = [
        libc::timespec {
            tv_sec: 1_000_000,
            tv_nsec: 5,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
    ];
    // SAFETY: valid path and a two-element timespec array.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, cpath(&p).as_ptr(), ts.as_ptr(), 0) }).unwrap();
    let after = fs::metadata(&p).unwrap();
    assert_eq!((after.atime(), after.atime_nsec()), (1_000_000, 5));
    assert_eq!(after.mtime(), before.mtime());
    assert!(after.ctime() >= before.ctime());
    let now = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
    ];
    // SAFETY: as above.
    check(unsafe { libc::utimensat(libc::AT_FDCWD, cpath(&p).as_ptr(), now.as_ptr(), 0) }).unwrap();
    assert!(fs::metadata(&p).unwrap().atime() > 1_000_000);
    // A write moves mtime and ctime.
    let t0 = fs::metadata(&p).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs::write(&p, b"x").unwrap();
    let t1 = fs::metadata(&p).unwrap();
    assert!((t1.mtime(), t1.mtime_nsec()) > (t0.mtime(), t0.mtime_nsec()));
    let dm = fs::metadata(d).unwrap();
    fs::write(d.join("new"), b"").unwrap();
    let dm2 = fs::metadata(d).unwrap();
    assert!((dm2.mtime(), dm2.mtime_nsec()) > (dm.mtime(), dm.mtime_nsec()));
}

fn xattr_set(p: &Path, name: &str, value: &[u8], flags: i32) -> std::io::Result<libc::c_int> {
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid path, name and value buffer.
    check(unsafe { libc::setxattr(cpath(p).as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) })
}

fn xattr_get(p: &Path, name: &str) -> std::io::Result<Vec<u8>> {
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 70_000];
    // SAFETY: valid path, name and buffer of the given length.
    let len = unsafe { libc::getxattr(cpath(p).as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if len < 0 {
        return Err(std::io::Error::last_os_error());
    }
    buf.truncate(len as usize);
    Ok(buf)
}

fn xattrs(d: &Path) {
    let p = d.join("x");
    fs::write(&p, b"").unwrap();
    xattr_set(&p, "user.color", b"blue", 0).unwrap();
    assert_eq!(xattr_get(&p, "user.color").unwrap(), b"blue");
    assert_eq!(
        errno_of(xattr_set(&p, "user.color", b"red", libc::XATTR_CREATE)),
        libc::EEXIST
    );
    assert_eq!(
        errno_of(xattr_set(&p, "user.none", b"red", libc::XATTR_REPLACE)),
        libc::ENODATA
    );
    assert_eq!(errno_of(xattr_get(&p, "user.none")), libc::ENODATA);
    let big = vec![7u8; 65536];
    xattr_set(&p, "user.big", &big, 0).unwrap();
    assert_eq!(xattr_get(&p, "user.big").unwrap(), big);
    assert_eq!(errno_of(xattr_set(&p, "user.huge", &[0; 65537], 0)), libc::E2BIG);
    let mut list = vec![0u8; 1024];
    // SAFETY: valid path and buffer.
    let len = unsafe { libc::listxattr(cpath(&p).as_ptr(), list.as_mut_ptr().cast(), list.len()) };
    assert!(len > 0);
    let names = &list[..len as usize];
    assert!(names.split(|b| *b == 0).any(|n| n == b"user.color"));
    let n = std::ffi::CString::new("user.color").unwrap();
    // SAFETY: valid path and name.
    check(unsafe { libc::removexattr(cpath(&p).as_ptr(), n.as_ptr()) }).unwrap();
    assert_eq!(errno_of(xattr_get(&p, "user.color")), libc::ENODATA);
}

fn fallocate_and_seek(d: &Path) {
    use std::os::fd::AsRawFd;
    let p = d.join("fa");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: fd is open for writing.
    check(unsafe { libc::fallocate(fd, 0, 0, 1 << 20) }).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 1 << 20);
    f.write_all_at(&[9; 4096], 2 << 20).unwrap();
    // SAFETY: as above.
    check(unsafe { libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, 0, 1 << 20) }).unwrap();
    // SAFETY: lseek on an open fd.
    let data = unsafe { libc::lseek(fd, 0, libc::SEEK_DATA) };
    assert_eq!(data, 2 << 20);
    // SAFETY: as above.
    let hole = unsafe { libc::lseek(fd, 0, libc::SEEK_HOLE) };
    assert_eq!(hole, 0);
    // SAFETY: as above.
    let r = unsafe { libc::fallocate(fd, libc::FALLOC_FL_COLLAPSE_RANGE, 0, 4096) };
    assert_eq!(r, -1);
    assert_eq!(std::io::Error::last_os_error().raw_os_error(), Some(libc::EOPNOTSUPP));
    let mut buf = vec![1u8; 4096];
    f.read_exact_at(&mut buf, 4096).unwrap();
    assert!(buf.iter().all(|b| *b == 0));
}

fn copy_file_range(d: &Path) {
    use std::os::fd::AsRawFd;
    let src: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    fs::write(d.join("src"), &src).unwrap();
    let a = File::open(d.join("src")).unwrap();
    let b = File::create(d.join("dst")).unwrap();
    let mut left = src.len();
    while left > 0 {
        // SAFETY: both fds are open; null offsets use the file positions.
        let n = unsafe {
            libc::copy_file_range(
                a.as_raw_fd(),
                std::ptr::null_mut(),
                b.as_raw_fd(),
                std::ptr::null_mut(),
                left,
                0,
            )
        };
        assert!(n > 0, "copy_file_range: {}", std::io::Error::last_os_error());
        left -= n as usize;
    }
    assert!(fs::read(d.join("dst")).unwrap() == src);
}

fn special_files(d: &Path) {
    let fifo = d.join("fifo");
    // SAFETY: valid path.
    check(unsafe { libc::mkfifo(cpath(&fifo).as_ptr(), 0o600) }).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::metadata(&fifo).unwrap().file_type()
    ));
    let sock = d.join("sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_socket(
        &fs::metadata(&sock).unwrap().file_type()
    ));
    // A FIFO on the mount works as a pipe between two threads.
    let writer = std::thread::spawn({
        let fifo = fifo.clone();
        move || fs::write(fifo, b"through the fifo").unwrap()
    });
    assert_eq!(fs::read(&fifo).unwrap(), b"through the fifo");
    writer.join().unwrap();
}

fn exclusive_create(d: &Path) {
    let p = d.join("excl");
    OpenOptions::new().write(true).create_new(true).open(&p).unwrap();
    assert_eq!(
        errno_of(OpenOptions::new().write(true).create_new(true).open(&p)),
        libc::EEXIST
    );
    std::os::unix::fs::symlink("nowhere", d.join("dangling")).unwrap();
    assert_eq!(
        errno_of(OpenOptions::new().write(true).create_new(true).open(d.join("dangling"))),
        libc::EEXIST
    );
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let p = d.join("race");
            std::thread::spawn(move || {
                OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(p)
                    .is_ok()
            })
        })
        .collect();
    let winners = threads
        .into_iter()
        .filter(|_| true)
        .map(|t| t.join().unwrap())
        .filter(|w| *w)
        .count();
    assert_eq!(winners, 1);
}

fn no_stale_reads_across_processes(d: &Path) {
    let p = d.join("shared");
    let mut w = File::create(&p).unwrap();
    let r = File::open(&p).unwrap();
    w.write_all(b"first").unwrap();
    let mut buf = [0u8; 5];
    r.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"first");
    // Another process sees the write, and then the truncate.
    let out = Command::new("cat").arg(&p).output().unwrap();
    assert_eq!(out.stdout, b"first");
    w.write_all_at(b"SECOND", 0).unwrap();
    let out = Command::new("cat").arg(&p).output().unwrap();
    assert_eq!(out.stdout, b"SECOND");
    w.set_len(2).unwrap();
    let out = Command::new("cat").arg(&p).output().unwrap();
    assert_eq!(out.stdout, b"SE");
    assert_eq!(r.metadata().unwrap().len(), 2);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("printf more >> '{}'", p.display()))
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut s = String::new();
    File::open(&p).unwrap().read_to_string(&mut s).unwrap();
    assert_eq!(s, "SEmore");
}

fn error_numbers(d: &Path) {
    let long = "n".repeat(256);
    assert_eq!(errno_of(File::create(d.join(&long))), libc::ENAMETOOLONG);
    assert_eq!(errno_of(fs::create_dir(d.join(&long))), libc::ENAMETOOLONG);
    assert_eq!(errno_of(fs::metadata(d.join(&long))), libc::ENAMETOOLONG);
    File::create(d.join("n".repeat(255))).unwrap();
    fs::create_dir_all(d.join("full/sub")).unwrap();
    assert_eq!(errno_of(fs::remove_dir(d.join("full"))), libc::ENOTEMPTY);
    assert_eq!(errno_of(fs::remove_dir(d.join("missing"))), libc::ENOENT);
    assert_eq!(errno_of(fs::remove_file(d.join("full"))), libc::EISDIR);
    let f = File::create(d.join("big")).unwrap();
    // The largest offsets behave as on kernel tmpfs: the last byte can be
    // written, one past it is refused (the kernel checks before we do).
    f.write_all_at(b"x", i64::MAX as u64 - 1).unwrap();
    assert_eq!(f.metadata().unwrap().len(), i64::MAX as u64);
    assert_eq!(errno_of(f.write_all_at(b"x", i64::MAX as u64)), libc::EINVAL);
    // SAFETY: ftruncate on an open descriptor; the length is negative on purpose.
    let r = unsafe { libc::ftruncate(std::os::fd::AsRawFd::as_raw_fd(&f), -1) };
    assert_eq!(errno_of(check(r)), libc::EINVAL);
    f.set_len(0).unwrap();
}

#[test]
fn regular_files_report_one_request_as_their_io_size() {
    // st_blksize sizes the buffers of programs that ask (Python's open,
    // coreutils): a request's worth, so that their writes come in 1 MiB
    // requests rather than one round trip per 4 or 64 KiB.
    let m = MountGuard::new("");
    let f = m.join("f");
    fs::write(&f, b"x").unwrap();
    assert_eq!(fs::metadata(&f).unwrap().blksize(), 1 << 20);
    assert_eq!(fs::metadata(m.path()).unwrap().blksize(), 4096);
    let out = Command::new("python3")
        .arg("-c")
        .arg("import sys; print(open(sys.argv[1], 'wb').raw._blksize)")
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1048576");
}
