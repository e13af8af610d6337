//! In-process tests of the core: no mount needed.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;

const USER: Caller = Caller {
    uid: 1000,
    gid: 1000,
    pid: 1,
};

fn fs_with(opts: &str) -> Fs {
    Fs::new(&MountConfig::parse(opts).unwrap(), USER)
}

fn fs() -> Fs {
    fs_with("size=1g,nr_inodes=100000")
}

fn n(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn create(fs: &Fs, parent: NodeId, name: &str) -> (NodeId, HandleId) {
    let (e, fh) = fs.create(USER, parent, n(name), 0o644, libc::O_RDWR).unwrap();
    (e.attr.ino, fh)
}

fn names(fs: &Fs, dir: NodeId) -> Vec<String> {
    let mut out = Vec::new();
    fs.readdir(dir, 0, |e| {
        out.push(e.name.to_string_lossy().into_owned());
        false
    })
    .unwrap();
    out
}

#[test]
fn unlinked_open_file_stays_usable_until_last_close_and_forget() {
    let fs = fs();
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    fs.write(fh, 0, b"still here").unwrap();
    fs.unlink(USER, NodeId::ROOT, n("f")).unwrap();
    assert_eq!(fs.lookup(NodeId::ROOT, n("f")), Err(FsError::NotFound));
    assert_eq!(fs.getattr(ino).unwrap().nlink, 0);
    fs.write(fh, 10, b"!").unwrap();
    assert_eq!(fs.read(fh, 0, 100).unwrap(), b"still here!");
    assert!(fs.stats().bytes > 0);
    fs.release(fh).unwrap();
    // The kernel still holds its lookup reference: the node is there.
    assert!(fs.getattr(ino).is_ok());
    fs.forget(ino, 1);
    assert_eq!(fs.getattr(ino), Err(FsError::NotFound));
    assert_eq!(fs.stats().bytes, 0);
    assert_eq!(fs.stats().inodes, 1);
}

#[test]
fn readdirplus_takes_a_lookup_for_each_entry_the_reply_holds_and_no_more() {
    let fs = fs();
    let (a, fa) = create(&fs, NodeId::ROOT, "a");
    let (b, fb) = create(&fs, NodeId::ROOT, "b");
    fs.write(fa, 0, b"aaaa").unwrap();
    fs.write(fb, 0, b"bb").unwrap();
    fs.release(fa).unwrap();
    fs.release(fb).unwrap();
    // A full listing (dots, a, b), then one whose buffer takes only the
    // dots and "a": "b" is not in that reply, so it gains no lookup.
    let mut sizes = BTreeMap::new();
    fs.readdirplus(NodeId::ROOT, 0, |e, entry| {
        sizes.insert(e.name.to_string_lossy().into_owned(), entry.attr.size);
        false
    })
    .unwrap();
    assert_eq!(sizes.get("a"), Some(&4), "attributes are the current ones");
    assert_eq!(sizes.get("b"), Some(&2));
    let mut taken = 0;
    fs.readdirplus(NodeId::ROOT, 0, |_, _| {
        taken += 1;
        taken > 3
    })
    .unwrap();
    // a: create + two listings; b: create + one.
    fs.unlink(USER, NodeId::ROOT, n("a")).unwrap();
    fs.unlink(USER, NodeId::ROOT, n("b")).unwrap();
    fs.forget(a, 2);
    assert!(fs.getattr(a).is_ok(), "freed while the kernel still holds a lookup");
    fs.forget(a, 1);
    assert_eq!(fs.getattr(a), Err(FsError::NotFound));
    fs.forget(b, 2);
    assert_eq!(fs.getattr(b), Err(FsError::NotFound));
    assert_eq!(fs.stats().bytes, 0);
    assert_eq!(fs.stats().inodes, 1);
}

/// Each listed name with the node and size a listing with attributes
/// reports for it.
fn listed(fs: &Fs, dir: NodeId) -> BTreeMap<String, (NodeId, u64)> {
    let mut out = BTreeMap::new();
    fs.readdirplus(dir, 2, |e, entry| {
        assert_eq!(e.ino, entry.attr.ino, "an entry's attributes are its own node's");
        out.insert(e.name.to_string_lossy().into_owned(), (e.ino, entry.attr.size));
        false
    })
    .unwrap();
    out
}

#[test]
fn a_listing_reports_the_node_each_name_holds_now_however_it_got_there() {
    let fs = fs();
    let sub = fs.mkdir(USER, NodeId::ROOT, n("sub"), 0o755).unwrap().attr.ino;
    let file = |parent, name: &str, len: usize| {
        let (ino, fh) = create(&fs, parent, name);
        fs.write(fh, 0, &vec![b'x'; len]).unwrap();
        fs.release(fh).unwrap();
        ino
    };
    let (a, b, c, d) = (
        file(NodeId::ROOT, "a", 1),
        file(NodeId::ROOT, "b", 2),
        file(NodeId::ROOT, "c", 3),
        file(sub, "d", 4),
    );
    let exchange = RenameFlags {
        exchange: true,
        ..RenameFlags::default()
    };
    fs.rename(USER, NodeId::ROOT, n("a"), NodeId::ROOT, n("b"), exchange)
        .unwrap();
    fs.rename(USER, NodeId::ROOT, n("c"), NodeId::ROOT, n("a"), RenameFlags::default())
        .unwrap();
    fs.rename(USER, sub, n("d"), NodeId::ROOT, n("e"), RenameFlags::default())
        .unwrap();
    fs.link(USER, a, sub, n("f")).unwrap();
    fs.rename(USER, sub, n("f"), sub, n("g"), RenameFlags::default())
        .unwrap();
    // a and b swapped names, then c took the name "a" from b (gone now),
    // d moved up as "e", and a got a second name in sub.
    let root = listed(&fs, NodeId::ROOT);
    assert_eq!(root.get("a"), Some(&(c, 3)));
    assert_eq!(root.get("b"), Some(&(a, 1)));
    assert_eq!(root.get("c"), None);
    assert_eq!(fs.getattr(b).unwrap().nlink, 0, "b lost its last name");
    assert_eq!(root.get("e"), Some(&(d, 4)));
    assert_eq!(
        listed(&fs, sub).into_iter().collect::<Vec<_>>(),
        [("g".to_owned(), (a, 1))]
    );
    // Unlinked, then made again: the new node, not the old one.
    fs.unlink(USER, NodeId::ROOT, n("e")).unwrap();
    let e = file(NodeId::ROOT, "e", 5);
    assert_ne!(e, d);
    assert_eq!(listed(&fs, NodeId::ROOT).get("e"), Some(&(e, 5)));
}

#[test]
fn readdir_offsets_survive_concurrent_changes() {
    let fs = fs();
    for i in 0..100 {
        let (ino, fh) = create(&fs, NodeId::ROOT, &format!("f{i:03}"));
        fs.release(fh).unwrap();
        fs.forget(ino, 1);
    }
    // Read the first 30 entries (after . and ..), then change the directory.
    let mut seen = Vec::new();
    let mut last = 0;
    fs.readdir(NodeId::ROOT, 0, |e| {
        if seen.len() == 32 {
            return true;
        }
        seen.push(e.name.to_string_lossy().into_owned());
        last = e.offset;
        false
    })
    .unwrap();
    for i in (0..100).step_by(2) {
        if i > 40 {
            fs.unlink(USER, NodeId::ROOT, n(&format!("f{i:03}"))).unwrap();
        }
    }
    let (_, fh) = create(&fs, NodeId::ROOT, "late");
    fs.release(fh).unwrap();
    fs.readdir(NodeId::ROOT, last, |e| {
        seen.push(e.name.to_string_lossy().into_owned());
        false
    })
    .unwrap();
    let unique: BTreeSet<_> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "an entry was listed twice");
    for i in 0..100 {
        let name = format!("f{i:03}");
        let stayed = i <= 40 || i % 2 == 1;
        if stayed {
            assert!(unique.contains(&name), "{name} was skipped");
        }
    }
    assert!(unique.contains("late"));
}

#[test]
fn readdir_reports_swapped_entries_after_rename_exchange() {
    let fs = fs();
    let (file, fh) = create(&fs, NodeId::ROOT, "f");
    fs.release(fh).unwrap();
    let dir = fs.mkdir(USER, NodeId::ROOT, n("d"), 0o755).unwrap().attr.ino;
    let flags = RenameFlags {
        exchange: true,
        ..RenameFlags::default()
    };
    fs.rename(USER, NodeId::ROOT, n("f"), NodeId::ROOT, n("d"), flags)
        .unwrap();
    let mut listed = BTreeMap::new();
    fs.readdir(NodeId::ROOT, 0, |e| {
        listed.insert(e.name.to_string_lossy().into_owned(), (e.ino, e.kind));
        false
    })
    .unwrap();
    assert_eq!(listed["f"], (dir, Kind::Dir));
    assert_eq!(listed["d"], (file, Kind::File));
    assert_eq!(fs.lookup(NodeId::ROOT, n("f")).unwrap().attr.ino, dir);
}

#[test]
fn directory_link_counts_follow_subdirectories() {
    let fs = fs();
    let a = fs.mkdir(USER, NodeId::ROOT, n("a"), 0o755).unwrap().attr.ino;
    assert_eq!(fs.getattr(NodeId::ROOT).unwrap().nlink, 3);
    fs.mkdir(USER, a, n("b"), 0o755).unwrap();
    fs.mkdir(USER, a, n("c"), 0o755).unwrap();
    assert_eq!(fs.getattr(a).unwrap().nlink, 4);
    fs.rename(USER, a, n("b"), NodeId::ROOT, n("b"), RenameFlags::default())
        .unwrap();
    assert_eq!(fs.getattr(a).unwrap().nlink, 3);
    assert_eq!(fs.getattr(NodeId::ROOT).unwrap().nlink, 4);
    assert_eq!(fs.rmdir(USER, NodeId::ROOT, n("a")), Err(FsError::NotEmpty));
    fs.rmdir(USER, a, n("c")).unwrap();
    fs.rmdir(USER, NodeId::ROOT, n("a")).unwrap();
    assert_eq!(fs.getattr(NodeId::ROOT).unwrap().nlink, 3);
}

#[test]
fn bad_names_and_offsets_get_the_right_errno() {
    let fs = fs();
    let long = "x".repeat(256);
    assert_eq!(fs.mkdir(USER, NodeId::ROOT, n(&long), 0o755), Err(FsError::NameTooLong));
    assert_eq!(fs.lookup(NodeId::ROOT, n(&long)), Err(FsError::NameTooLong));
    assert!(fs.mkdir(USER, NodeId::ROOT, n(&"x".repeat(255)), 0o755).is_ok());
    let (_, fh) = create(&fs, NodeId::ROOT, "f");
    assert_eq!(fs.write(fh, MAX_FILE_SIZE, b"x"), Err(FsError::FileTooBig));
    assert_eq!(fs.write(fh, u64::MAX - 1, b"xx"), Err(FsError::FileTooBig));
    assert!(fs.write(fh, MAX_FILE_SIZE - 1, b"x").is_ok());
    let ino = fs.lookup(NodeId::ROOT, n("f")).unwrap().attr.ino;
    let huge = SetAttr {
        size: Some(MAX_FILE_SIZE + 1),
        ..SetAttr::default()
    };
    assert_eq!(fs.setattr(USER, ino, huge), Err(FsError::FileTooBig));
    let d = fs.mkdir(USER, NodeId::ROOT, n("d"), 0o755).unwrap().attr.ino;
    fs.mkdir(USER, d, n("e"), 0o755).unwrap();
    assert_eq!(
        fs.rename(USER, NodeId::ROOT, n("d"), d, n("x"), RenameFlags::default()),
        Err(FsError::Invalid)
    );
    let e = fs.lookup(d, n("e")).unwrap().attr.ino;
    assert_eq!(
        fs.rename(USER, NodeId::ROOT, n("d"), e, n("x"), RenameFlags::default()),
        Err(FsError::Invalid)
    );
    assert_eq!(fs.unlink(USER, NodeId::ROOT, n("d")), Err(FsError::IsDir));
    assert_eq!(fs.rmdir(USER, NodeId::ROOT, n("f")), Err(FsError::NotDir));
    assert_eq!(
        fs.symlink(USER, NodeId::ROOT, n("l"), n(&"t".repeat(4096))),
        Err(FsError::NameTooLong)
    );
    assert_eq!(Fallocate::from_mode(0x10), Err(FsError::NotSupported));
    assert_eq!(Fallocate::from_mode(0x02), Err(FsError::NotSupported));
}

#[test]
fn a_write_is_answered_once_with_its_size_and_times_already_set() {
    // In RAM, and spilled (200,000 bytes pass spool=64k).
    for (opts, spilled) in [("size=1m", 0), ("size=1m,spool=64k", 1)] {
        let (_parent, fs) = spilling_fs(opts);
        let (ino, fh) = create(&fs, NodeId::ROOT, "f");
        let before = fs.getattr(ino).unwrap().mtime;
        std::thread::sleep(Duration::from_millis(2));
        let mut answers = Vec::new();
        fs.write_answering(fh, 100, &[5; 200_000], false, |r| {
            // The write still holds the file's data lock; getattr reads
            // what it published.
            let a = fs.getattr(ino).unwrap();
            answers.push((r, a.size, a.mtime > before));
        });
        assert_eq!(answers, [(Ok(200_000), 200_100, true)], "{opts}");
        assert_eq!(fs.stats().files_spilled, spilled, "{opts}");
        let got = fs.read(fh, 0, 300_000).unwrap();
        assert_eq!(got.len(), 200_100, "{opts}");
        assert!(got[..100].iter().all(|&b| b == 0), "{opts}");
        assert!(got[100..].iter().all(|&b| b == 5), "{opts}");
        // Refused: answered once, with the error, and nothing changed.
        let mut refused = Vec::new();
        fs.write_answering(fh, 0, &vec![1; 2 << 20], false, |r| refused.push(r));
        assert_eq!(refused, [Err(FsError::NoSpace)], "{opts}");
        assert_eq!(fs.getattr(ino).unwrap().size, 200_100, "{opts}");
        assert_eq!(fs.read(fh, 0, 300_000).unwrap(), got, "{opts}");
    }
}

#[test]
fn an_answer_that_unwinds_still_leaves_the_bytes_written() {
    for (opts, spilled) in [("size=1m", 0), ("size=1m,spool=64k", 1)] {
        let (_parent, fs) = spilling_fs(opts);
        let (ino, fh) = create(&fs, NodeId::ROOT, "f");
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            fs.write_answering(fh, 0, &[9; 100_000], false, |_| panic!("the adapter failed to answer"));
        }));
        assert!(r.is_err(), "{opts}: the panic reaches the caller");
        assert_eq!(fs.stats().files_spilled, spilled, "{opts}");
        // The size was published before the answer; the bytes are there.
        assert_eq!(fs.getattr(ino).unwrap().size, 100_000, "{opts}");
        let got = fs.read(fh, 0, 200_000).unwrap();
        assert!(got.len() == 100_000 && got.iter().all(|&b| b == 9), "{opts}");
        // And the file still takes writes (no lock left held).
        assert_eq!(fs.write(fh, 100_000, b"next"), Ok(4), "{opts}");
    }
}

#[test]
fn a_failed_spill_is_not_tried_again_at_every_write() {
    // Past spool=256k the file would spill, but the spill directory is
    // gone (a failing disk): the file stays in RAM.
    let (_parent, fs) = spilling_fs("size=400k,spool=256k");
    std::fs::remove_dir(fs.tiers.dir.as_ref().unwrap().path()).unwrap();
    let (_, fh) = create(&fs, NodeId::ROOT, "f");
    let mut off = 0;
    for _ in 0..84 {
        fs.write(fh, off, &[1; 4096]).unwrap();
        off += 4096;
    }
    let s = fs.stats();
    assert_eq!((s.files_spilled, s.spill_failures), (0, 1), "{s:?}");
    // Once the retry time has passed, the next write tries again.
    std::thread::sleep(Duration::from_millis(1000 * tiering::SPILL_RETRY_SECS + 100));
    fs.write(fh, off, &[2; 4096]).unwrap();
    assert_eq!(fs.stats().spill_failures, 2);
    assert_eq!(fs.read(fh, 0, 4096).unwrap(), vec![1; 4096]);
}

#[test]
fn fsync_reports_a_failed_spill_file_and_bad_handles() {
    let (parent, fs) = spilling_fs("size=16m,spool=64k");
    let (_, small) = create(&fs, NodeId::ROOT, "small");
    fs.write(small, 0, b"x").unwrap();
    let (_, big) = create(&fs, NodeId::ROOT, "big");
    fs.write(big, 0, &[1; 100_000]).unwrap();
    assert_eq!(fs.stats().files_spilled, 1);
    assert_eq!(fs.fsync(small), Ok(()));
    assert_eq!(fs.fsync(big), Ok(()));
    // A failing disk: the spill file cut short under its map (reached
    // through this process's descriptor of it, which names the spill
    // directory) makes the next read fail, and fsync says so.
    let fd = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            std::fs::read_link(p).is_ok_and(|t| t.starts_with(parent.path()))
                && std::fs::metadata(p).is_ok_and(|m| m.is_file())
        })
        .expect("a descriptor of the spill file");
    std::fs::OpenOptions::new()
        .write(true)
        .open(fd)
        .unwrap()
        .set_len(0)
        .unwrap();
    assert_eq!(fs.read(big, 0, 4096), Err(FsError::Io));
    assert_eq!(fs.fsync(big), Err(FsError::Io));
    assert_eq!(fs.fsync(small), Ok(()));
    fs.release(big).unwrap();
    assert_eq!(fs.fsync(big), Err(FsError::BadHandle));
}

#[test]
fn limits_answer_enospc_and_harm_nothing() {
    let fs = fs_with("size=1m,nr_inodes=4");
    let (ino, fh) = create(&fs, NodeId::ROOT, "keep");
    fs.write(fh, 0, &[7; 1000]).unwrap();
    let (_, big) = create(&fs, NodeId::ROOT, "big");
    assert_eq!(fs.write(big, 0, &vec![1; 2 << 20]), Err(FsError::NoSpace));
    assert_eq!(
        fs.getattr(fs.lookup(NodeId::ROOT, n("big")).unwrap().attr.ino)
            .unwrap()
            .size,
        0
    );
    fs.create(USER, NodeId::ROOT, n("third"), 0o644, 0).unwrap();
    assert_eq!(fs.mkdir(USER, NodeId::ROOT, n("fifth"), 0o755), Err(FsError::NoSpace));
    assert_eq!(fs.lookup(NodeId::ROOT, n("fifth")), Err(FsError::NotFound));
    assert_eq!(fs.read(fh, 0, 2000).unwrap(), vec![7; 1000]);
    assert_eq!(fs.getattr(ino).unwrap().size, 1000);
    assert!(fs.stats().enospc >= 2);
    let st = fs.statfs();
    assert_eq!(st.blocks, 256);
    assert_eq!(st.files, 4);
    assert_eq!(st.ffree, 0);
}

#[test]
fn rename_flags_noreplace_and_exchange() {
    let fs = fs();
    let (a, fh) = create(&fs, NodeId::ROOT, "a");
    fs.release(fh).unwrap();
    let d = fs.mkdir(USER, NodeId::ROOT, n("d"), 0o755).unwrap().attr.ino;
    let noreplace = RenameFlags {
        noreplace: true,
        exchange: false,
    };
    let exchange = RenameFlags {
        noreplace: false,
        exchange: true,
    };
    assert_eq!(
        fs.rename(USER, NodeId::ROOT, n("a"), NodeId::ROOT, n("d"), noreplace),
        Err(FsError::Exists)
    );
    assert_eq!(
        fs.rename(USER, NodeId::ROOT, n("a"), NodeId::ROOT, n("zz"), exchange),
        Err(FsError::NotFound)
    );
    fs.rename(USER, NodeId::ROOT, n("a"), NodeId::ROOT, n("d"), exchange)
        .unwrap();
    assert_eq!(fs.lookup(NodeId::ROOT, n("a")).unwrap().attr.ino, d);
    assert_eq!(fs.lookup(NodeId::ROOT, n("d")).unwrap().attr.ino, a);
    // Exchange across directories moves the subdirectory's parent too.
    let sub = fs.mkdir(USER, d, n("sub"), 0o755).unwrap().attr.ino;
    fs.rename(USER, d, n("sub"), NodeId::ROOT, n("d"), exchange).unwrap();
    assert_eq!(fs.lookup(NodeId::ROOT, n("d")).unwrap().attr.ino, sub);
    assert_eq!(fs.lookup(d, n("sub")).unwrap().attr.ino, a);
    assert_eq!(fs.getattr(d).unwrap().nlink, 2);
    assert_eq!(fs.getattr(NodeId::ROOT).unwrap().nlink, 4);
    let mut dotdot = None;
    fs.readdir(sub, 0, |e| {
        if e.name == ".." {
            dotdot = Some(e.ino);
        }
        false
    })
    .unwrap();
    assert_eq!(dotdot, Some(NodeId::ROOT));
}

#[test]
fn xattrs_follow_linux_rules() {
    let fs = fs();
    let (ino, _) = create(&fs, NodeId::ROOT, "f");
    fs.setxattr(USER, ino, n("user.a"), b"1", 0).unwrap();
    assert_eq!(fs.setxattr(USER, ino, n("user.a"), b"2", 1), Err(FsError::Exists));
    assert_eq!(fs.setxattr(USER, ino, n("user.b"), b"2", 2), Err(FsError::NoAttr));
    assert_eq!(
        fs.setxattr(USER, ino, n("trusted.a"), b"2", 0),
        Err(FsError::NotPermitted)
    );
    fs.setxattr(Caller::ROOT, ino, n("trusted.a"), b"root", 0).unwrap();
    assert_eq!(
        fs.setxattr(USER, ino, n("system.posix_acl_access"), b"", 0),
        Err(FsError::NotSupported)
    );
    assert_eq!(
        fs.setxattr(USER, ino, n("user.big"), &[0; XATTR_VALUE_MAX + 1], 0),
        Err(FsError::TooBig)
    );
    assert_eq!(
        fs.setxattr(USER, ino, n(&format!("user.{}", "n".repeat(251))), b"", 0),
        Err(FsError::Range)
    );
    assert_eq!(fs.getxattr(USER, ino, n("user.a")).unwrap(), b"1");
    assert_eq!(fs.listxattr(USER, ino).unwrap(), b"user.a\0");
    assert_eq!(fs.listxattr(Caller::ROOT, ino).unwrap(), b"trusted.a\0user.a\0");
    let before = fs.stats().bytes;
    fs.removexattr(USER, ino, n("user.a")).unwrap();
    assert!(fs.stats().bytes < before);
    assert_eq!(fs.getxattr(USER, ino, n("user.a")), Err(FsError::NoAttr));
    let l = fs.symlink(USER, NodeId::ROOT, n("l"), n("f")).unwrap().attr.ino;
    assert_eq!(fs.setxattr(USER, l, n("user.a"), b"1", 0), Err(FsError::NotPermitted));
}

#[test]
fn exclusive_create_has_exactly_one_winner() {
    let fs = Arc::new(fs());
    for round in 0..50 {
        let name = format!("race{round}");
        let winners: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|_| {
                    let fs = Arc::clone(&fs);
                    let name = name.clone();
                    s.spawn(move || {
                        fs.create(USER, NodeId::ROOT, n(&name), 0o600, libc::O_EXCL | libc::O_RDWR)
                            .is_ok()
                    })
                })
                .collect();
            hs.into_iter().map(|h| usize::from(h.join().unwrap())).sum()
        });
        assert_eq!(winners, 1, "round {round}");
    }
    // A dangling symlink at the name also makes O_EXCL fail.
    fs.symlink(USER, NodeId::ROOT, n("dangling"), n("nowhere")).unwrap();
    assert_eq!(
        fs.create(USER, NodeId::ROOT, n("dangling"), 0o600, libc::O_EXCL)
            .map(|_| ()),
        Err(FsError::Exists)
    );
}

#[test]
fn seek_data_hole_fallocate_and_copy_file_range() {
    let fs = fs();
    let (_, fh) = create(&fs, NodeId::ROOT, "f");
    fs.write(fh, 1 << 20, b"data").unwrap();
    assert_eq!(fs.lseek(fh, 0, Whence::Data), Ok(1 << 20));
    assert_eq!(fs.lseek(fh, 0, Whence::Hole), Ok(0));
    assert_eq!(fs.lseek(fh, 1 << 20, Whence::Hole), Ok((1 << 20) + 4));
    assert_eq!(fs.lseek(fh, (1 << 20) + 4, Whence::Data), Err(FsError::NoSuchOffset));
    fs.fallocate(fh, 0, 8192, Fallocate::KeepSize).unwrap();
    assert_eq!(fs.lseek(fh, 0, Whence::Data), Ok(0));
    fs.fallocate(fh, (1 << 20) + 4, 100, Fallocate::Allocate).unwrap();
    assert_eq!(fs.lseek(fh, 0, Whence::End), Ok((1 << 20) + 104));
    fs.fallocate(fh, 1 << 20, 2, Fallocate::PunchHole).unwrap();
    assert_eq!(fs.read(fh, 1 << 20, 4).unwrap(), b"\0\0ta");
    assert_eq!(fs.fallocate(fh, 0, 0, Fallocate::Allocate), Err(FsError::Invalid));
    let (_, out) = create(&fs, NodeId::ROOT, "g");
    assert_eq!(fs.copy_file_range(fh, (1 << 20) + 2, out, 3, 1000).unwrap(), 102);
    assert_eq!(&fs.read(out, 0, 5).unwrap(), b"\0\0\0ta");
    assert_eq!(fs.copy_file_range(fh, 0, fh, 10, 100), Err(FsError::Invalid));
}

#[test]
fn setattr_truncate_and_times() {
    let fs = fs();
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    fs.write(fh, 0, &[1; 10000]).unwrap();
    let before = fs.getattr(ino).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    let a = fs
        .setattr(
            USER,
            ino,
            SetAttr {
                size: Some(10),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!(a.size, 10);
    assert!(a.mtime > before.mtime && a.ctime > before.ctime);
    let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
    let a = fs
        .setattr(
            USER,
            ino,
            SetAttr {
                mode: Some(0o4751),
                uid: Some(5),
                atime: Some(TimeSet::At(t)),
                mtime: Some(TimeSet::At(t)),
                ..SetAttr::default()
            },
        )
        .unwrap();
    assert_eq!((a.perm, a.uid, a.atime, a.mtime), (0o4751, 5, t, t));
    let d = fs.mkdir(USER, NodeId::ROOT, n("d"), 0o755).unwrap().attr.ino;
    let size = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    assert_eq!(fs.setattr(USER, d, size), Err(FsError::IsDir));
}

#[test]
fn setgid_directories_pass_their_group_on() {
    let fs = fs();
    let d = fs.mkdir(USER, NodeId::ROOT, n("d"), 0o2775).unwrap().attr.ino;
    fs.setattr(
        Caller::ROOT,
        d,
        SetAttr {
            gid: Some(50),
            ..SetAttr::default()
        },
    )
    .unwrap();
    let sub = fs.mkdir(USER, d, n("sub"), 0o755).unwrap().attr;
    assert_eq!((sub.gid, sub.perm & 0o2000), (50, 0o2000));
    let (e, _) = fs.create(USER, d, n("f"), 0o644, 0).unwrap();
    assert_eq!(e.attr.gid, 50);
}

#[test]
fn parallel_namespace_churn_does_not_deadlock_or_leak() {
    let fs = Arc::new(fs());
    let dirs: Vec<NodeId> = (0..4)
        .map(|i| {
            fs.mkdir(USER, NodeId::ROOT, n(&format!("d{i}")), 0o755)
                .unwrap()
                .attr
                .ino
        })
        .collect();
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let fs = Arc::clone(&fs);
            let dirs = dirs.clone();
            s.spawn(move || {
                let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                for i in 0..2000 {
                    let a = dirs[(next() % 4) as usize];
                    let b = dirs[(next() % 4) as usize];
                    let name = format!("n{}", next() % 8);
                    match next() % 5 {
                        0 => {
                            if let Ok((e, fh)) = fs.create(USER, a, n(&name), 0o644, 0) {
                                let _ = fs.write(fh, 0, &[t as u8; 100]);
                                fs.release(fh).unwrap();
                                fs.forget(e.attr.ino, 1);
                            }
                        }
                        1 => {
                            let _ = fs.unlink(USER, a, n(&name));
                        }
                        2 => {
                            let _ = fs.rename(USER, a, n(&name), b, n(&format!("n{i}")), RenameFlags::default());
                        }
                        3 => {
                            if let Ok(e) = fs.mkdir(USER, a, n(&name), 0o755) {
                                fs.forget(e.attr.ino, 1);
                            }
                        }
                        _ => {
                            let _ = fs.rmdir(USER, a, n(&name));
                            let _ = fs.readdir(b, 0, |_| false);
                        }
                    }
                }
            });
        }
    });
    // Remove everything; then only the root and the four directories remain.
    for &d in &dirs {
        let mut names = Vec::new();
        fs.readdir(d, 0, |e| {
            if e.name != "." && e.name != ".." {
                names.push((e.name.to_os_string(), e.kind));
            }
            false
        })
        .unwrap();
        for (name, kind) in names {
            if kind == Kind::Dir {
                fs.rmdir(USER, d, &name).unwrap();
            } else {
                fs.unlink(USER, d, &name).unwrap();
            }
        }
    }
    assert_eq!(fs.stats().inodes, 5);
    assert_eq!(fs.stats().bytes, 0);
}

// ------------------------------------------------------------------ model

/// A plain reference model: paths to nodes, contents by file id.
#[derive(Debug, Default, Clone)]
struct Model {
    paths: BTreeMap<String, MNode>,
    contents: BTreeMap<u32, Vec<u8>>,
    next: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MNode {
    Dir,
    File(u32),
}

fn parent_of(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

fn base_of(p: &str) -> &str {
    p.rsplit_once('/').map_or(p, |(_, b)| b)
}

impl Model {
    fn get(&self, p: &str) -> Option<MNode> {
        if p.is_empty() {
            Some(MNode::Dir)
        } else {
            self.paths.get(p).copied()
        }
    }

    /// Resolves `p` component by component, as the harness's lookups do.
    fn lookup_path(&self, p: &str) -> Result<MNode, FsError> {
        let mut cur = String::new();
        if p.is_empty() {
            return Ok(MNode::Dir);
        }
        for part in p.split('/') {
            if self.get(&cur) != Some(MNode::Dir) {
                return Err(FsError::NotDir);
            }
            if !cur.is_empty() {
                cur.push('/');
            }
            cur.push_str(part);
            if self.get(&cur).is_none() {
                return Err(FsError::NotFound);
            }
        }
        Ok(self.get(&cur).unwrap())
    }

    /// The errno that resolving `p`'s parent (without checking its kind) gives.
    fn parent_lookup_err(&self, p: &str) -> Option<FsError> {
        self.lookup_path(parent_of(p)).err()
    }

    /// ENOTDIR when `p`'s parent resolves to a non-directory.
    fn parent_kind_err(&self, p: &str) -> Option<FsError> {
        (self.get(parent_of(p)) != Some(MNode::Dir)).then_some(FsError::NotDir)
    }

    /// The errno that using `p`'s parent as a directory gives, if any.
    fn parent_err(&self, p: &str) -> Option<FsError> {
        self.parent_lookup_err(p).or_else(|| self.parent_kind_err(p))
    }

    fn children(&self, d: &str) -> Vec<String> {
        self.paths
            .keys()
            .filter(|p| parent_of(p) == d && !p.is_empty())
            .map(|p| base_of(p).to_string())
            .collect()
    }

    fn check_parent_and_self(&self, p: &str) -> Result<Option<MNode>, FsError> {
        if let Some(e) = self.parent_err(p) {
            return Err(e);
        }
        Ok(self.get(p))
    }

    fn create(&mut self, p: &str, dir: bool) -> Result<(), FsError> {
        if self.check_parent_and_self(p)?.is_some() {
            return Err(FsError::Exists);
        }
        let node = if dir {
            MNode::Dir
        } else {
            self.next += 1;
            self.contents.insert(self.next, Vec::new());
            MNode::File(self.next)
        };
        self.paths.insert(p.into(), node);
        Ok(())
    }

    fn unlink(&mut self, p: &str) -> Result<(), FsError> {
        match self.check_parent_and_self(p)? {
            None => Err(FsError::NotFound),
            Some(MNode::Dir) => Err(FsError::IsDir),
            Some(MNode::File(_)) => {
                self.paths.remove(p);
                Ok(())
            }
        }
    }

    fn rmdir(&mut self, p: &str) -> Result<(), FsError> {
        match self.check_parent_and_self(p)? {
            None => Err(FsError::NotFound),
            Some(MNode::File(_)) => Err(FsError::NotDir),
            Some(MNode::Dir) if !self.children(p).is_empty() => Err(FsError::NotEmpty),
            Some(MNode::Dir) => {
                self.paths.remove(p);
                Ok(())
            }
        }
    }

    fn link(&mut self, from: &str, to: &str) -> Result<(), FsError> {
        let src = self.lookup_path(from)?;
        if let Some(e) = self.parent_lookup_err(to) {
            return Err(e);
        }
        if src == MNode::Dir {
            return Err(FsError::NotPermitted);
        }
        if let Some(e) = self.parent_kind_err(to) {
            return Err(e);
        }
        if self.get(to).is_some() {
            return Err(FsError::Exists);
        }
        self.paths.insert(to.into(), src);
        Ok(())
    }

    fn rename(&mut self, from: &str, to: &str, flags: RenameFlags) -> Result<(), FsError> {
        let err = self
            .parent_lookup_err(from)
            .or_else(|| self.parent_lookup_err(to))
            .or_else(|| self.parent_kind_err(from))
            .or_else(|| self.parent_kind_err(to));
        if let Some(e) = err {
            return Err(e);
        }
        let src = self.get(from).ok_or(FsError::NotFound)?;
        let dst = self.get(to);
        let under = |a: &str, b: &str| a.starts_with(&format!("{b}/"));
        if src == MNode::Dir && parent_of(from) != parent_of(to) && under(to, from) {
            return Err(FsError::Invalid);
        }
        if flags.exchange {
            let dst = dst.ok_or(FsError::NotFound)?;
            if dst == MNode::Dir && parent_of(from) != parent_of(to) && under(from, to) {
                return Err(FsError::Invalid);
            }
            if from == to || (src == dst && src != MNode::Dir) {
                return Ok(());
            }
            self.swap_subtrees(from, to);
            return Ok(());
        }
        if let Some(dst) = dst {
            if flags.noreplace {
                return Err(FsError::Exists);
            }
            if from == to || (src == dst && src != MNode::Dir) {
                return Ok(());
            }
            match (src, dst) {
                (MNode::Dir, MNode::File(_)) => return Err(FsError::NotDir),
                (MNode::File(_), MNode::Dir) => return Err(FsError::IsDir),
                (MNode::Dir, MNode::Dir) if !self.children(to).is_empty() => return Err(FsError::NotEmpty),
                _ => {}
            }
            self.paths.remove(to);
        }
        self.move_subtree(from, to);
        Ok(())
    }

    fn take_subtree(&mut self, p: &str) -> Vec<(String, MNode)> {
        let keys: Vec<String> = self
            .paths
            .keys()
            .filter(|k| *k == p || k.starts_with(&format!("{p}/")))
            .cloned()
            .collect();
        keys.into_iter()
            .map(|k| {
                let v = self.paths.remove(&k).unwrap();
                (k[p.len()..].to_string(), v)
            })
            .collect()
    }

    fn move_subtree(&mut self, from: &str, to: &str) {
        for (suffix, v) in self.take_subtree(from) {
            self.paths.insert(format!("{to}{suffix}"), v);
        }
    }

    fn swap_subtrees(&mut self, a: &str, b: &str) {
        let ta = self.take_subtree(a);
        let tb = self.take_subtree(b);
        for (suffix, v) in ta {
            self.paths.insert(format!("{b}{suffix}"), v);
        }
        for (suffix, v) in tb {
            self.paths.insert(format!("{a}{suffix}"), v);
        }
    }

    fn file(&mut self, p: &str) -> Result<&mut Vec<u8>, FsError> {
        match self.check_parent_and_self(p)? {
            None => Err(FsError::NotFound),
            Some(MNode::Dir) => Err(FsError::IsDir),
            Some(MNode::File(id)) => Ok(self.contents.get_mut(&id).unwrap()),
        }
    }
}

/// The real file system driven by paths, with lookup counts kept balanced.
struct Real {
    fs: Fs,
}

impl Real {
    fn resolve(&self, p: &str) -> FsResult<NodeId> {
        let mut cur = NodeId::ROOT;
        if p.is_empty() {
            return Ok(cur);
        }
        for part in p.split('/') {
            let e = self.fs.lookup(cur, n(part))?;
            self.fs.forget(e.attr.ino, 1);
            cur = e.attr.ino;
        }
        Ok(cur)
    }

    fn parent(&self, p: &str) -> FsResult<NodeId> {
        self.resolve(parent_of(p))
    }

    fn with_file<T>(&self, p: &str, f: impl FnOnce(HandleId) -> FsResult<T>) -> FsResult<T> {
        let ino = self.resolve(p)?;
        let fh = self.fs.open(USER, ino, libc::O_RDWR)?;
        let r = f(fh);
        self.fs.release(fh).unwrap();
        r
    }
}

#[derive(Debug, Clone)]
enum Op {
    Create(usize),
    Mkdir(usize),
    Unlink(usize),
    Rmdir(usize),
    Link(usize, usize),
    Rename(usize, usize, u8),
    Write(usize, u32, u32, u8),
    Truncate(usize, u32),
    Punch(usize, u32, u32),
}

const PATHS: &[&str] = &[
    "a", "b", "d", "e", "d/a", "d/b", "d/d", "d/e", "e/a", "e/d", "d/d/a", "d/d/d", "e/d/a", "a/x",
];

fn op() -> impl Strategy<Value = Op> {
    let p = 0..PATHS.len();
    prop_oneof![
        p.clone().prop_map(Op::Create),
        p.clone().prop_map(Op::Mkdir),
        p.clone().prop_map(Op::Unlink),
        p.clone().prop_map(Op::Rmdir),
        (p.clone(), p.clone()).prop_map(|(a, b)| Op::Link(a, b)),
        (p.clone(), p.clone(), 0..3u8).prop_map(|(a, b, f)| Op::Rename(a, b, f)),
        (p.clone(), 0..300_000u32, 0..70_000u32, any::<u8>()).prop_map(|(a, o, l, b)| Op::Write(a, o, l, b)),
        (p.clone(), 0..300_000u32).prop_map(|(a, s)| Op::Truncate(a, s)),
        (p, 0..300_000u32, 1..200_000u32).prop_map(|(a, o, l)| Op::Punch(a, o, l)),
    ]
}

fn apply(model: &mut Model, real: &Real, op: &Op) -> (Result<(), FsError>, Result<(), FsError>) {
    let r = |fsr: FsResult<()>| fsr;
    match *op {
        Op::Create(i) => {
            let p = PATHS[i];
            let got = real.parent(p).and_then(|d| {
                let (e, fh) = real.fs.create(USER, d, n(base_of(p)), 0o644, libc::O_EXCL)?;
                real.fs.release(fh).unwrap();
                real.fs.forget(e.attr.ino, 1);
                Ok(())
            });
            (model.create(p, false), r(got))
        }
        Op::Mkdir(i) => {
            let p = PATHS[i];
            let got = real.parent(p).and_then(|d| {
                let e = real.fs.mkdir(USER, d, n(base_of(p)), 0o755)?;
                real.fs.forget(e.attr.ino, 1);
                Ok(())
            });
            (model.create(p, true), got)
        }
        Op::Unlink(i) => {
            let p = PATHS[i];
            let got = real.parent(p).and_then(|d| real.fs.unlink(USER, d, n(base_of(p))));
            (model.unlink(p), got)
        }
        Op::Rmdir(i) => {
            let p = PATHS[i];
            let got = real.parent(p).and_then(|d| real.fs.rmdir(USER, d, n(base_of(p))));
            (model.rmdir(p), got)
        }
        Op::Link(a, b) => {
            let (from, to) = (PATHS[a], PATHS[b]);
            let got = real.resolve(from).and_then(|src| {
                let d = real.parent(to)?;
                let e = real.fs.link(USER, src, d, n(base_of(to)))?;
                real.fs.forget(e.attr.ino, 1);
                Ok(())
            });
            (model.link(from, to), got)
        }
        Op::Rename(a, b, f) => {
            let (from, to) = (PATHS[a], PATHS[b]);
            let flags = RenameFlags {
                noreplace: f == 1,
                exchange: f == 2,
            };
            let got = real.parent(from).and_then(|sd| {
                let dd = real.parent(to)?;
                real.fs.rename(USER, sd, n(base_of(from)), dd, n(base_of(to)), flags)
            });
            (model.rename(from, to, flags), got)
        }
        Op::Write(i, off, len, byte) => {
            let p = PATHS[i];
            let data = vec![byte; len as usize];
            let got = real.with_file(p, |fh| real.fs.write(fh, u64::from(off), &data).map(|_| ()));
            let want = model.file(p).map(|v| {
                let end = off as usize + data.len();
                if !data.is_empty() && v.len() < end {
                    v.resize(end, 0);
                }
                v[off as usize..off as usize + data.len()].copy_from_slice(&data);
            });
            (want, got)
        }
        Op::Truncate(i, size) => {
            let p = PATHS[i];
            let got = real.resolve(p).and_then(|ino| {
                real.fs
                    .setattr(
                        USER,
                        ino,
                        SetAttr {
                            size: Some(u64::from(size)),
                            ..SetAttr::default()
                        },
                    )
                    .map(|_| ())
            });
            let want = model.file(p).map(|v| v.resize(size as usize, 0));
            (want, got)
        }
        Op::Punch(i, off, len) => {
            let p = PATHS[i];
            let got = real.with_file(p, |fh| {
                real.fs
                    .fallocate(fh, u64::from(off), u64::from(len), Fallocate::PunchHole)
            });
            let want = model.file(p).map(|v| {
                let end = (off as usize + len as usize).min(v.len());
                if (off as usize) < end {
                    v[off as usize..end].fill(0);
                }
            });
            (want, got)
        }
    }
}

fn check_same(model: &Model, real: &Real) {
    for p in PATHS.iter().copied().chain([""]) {
        let want = model.get(p);
        let got = real.resolve(p);
        match (want, got) {
            (None, Err(_)) => {}
            (Some(MNode::Dir), Ok(ino)) => {
                let mut listed = names(&real.fs, ino);
                listed.retain(|x| x != "." && x != "..");
                listed.sort();
                let mut expected = model.children(p);
                expected.sort();
                assert_eq!(listed, expected, "listing of {p:?}");
                assert_eq!(real.fs.getattr(ino).unwrap().kind, Kind::Dir);
            }
            (Some(MNode::File(id)), Ok(ino)) => {
                let expected = &model.contents[&id];
                let attr = real.fs.getattr(ino).unwrap();
                assert_eq!(attr.size, expected.len() as u64, "size of {p:?}");
                let got = real
                    .with_file(p, |fh| real.fs.read(fh, 0, expected.len() as u32 + 10))
                    .unwrap();
                assert!(got == *expected, "contents of {p:?} differ");
            }
            (w, g) => panic!("{p:?}: model {w:?}, real {g:?}"),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn core_matches_reference_model(ops in proptest::collection::vec(op(), 1..60)) {
        let mut model = Model::default();
        let real = Real { fs: fs() };
        for op in &ops {
            let (want, got) = apply(&mut model, &real, op);
            prop_assert_eq!(want, got, "op {:?}", op);
            check_same(&model, &real);
        }
        // Removing everything must give every byte and inode back.
        let mut paths: Vec<String> = model.paths.keys().cloned().collect();
        paths.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        for p in paths {
            let d = real.parent(&p).unwrap();
            match model.paths[&p] {
                MNode::Dir => real.fs.rmdir(USER, d, n(base_of(&p))).unwrap(),
                MNode::File(_) => real.fs.unlink(USER, d, n(base_of(&p))).unwrap(),
            }
        }
        prop_assert_eq!(real.fs.stats().inodes, 1);
        prop_assert_eq!(real.fs.stats().bytes, 0);
    }
}

#[test]
fn writes_truncates_and_chowns_drop_privileges_as_linux_does() {
    let fs = fs();
    let (ino, fh) = create(&fs, NodeId::ROOT, "prog");
    let perm = |fs: &Fs| fs.getattr(ino).unwrap().perm & 0o7777;
    let chmod = |mode| {
        let set = SetAttr {
            mode: Some(mode),
            ..SetAttr::default()
        };
        fs.setattr(Caller::ROOT, ino, set).unwrap();
    };
    // A privileged write keeps set-id bits; an unprivileged one drops
    // set-user-ID, and set-group-ID only where the group may execute.
    chmod(0o6755);
    fs.write_killing(fh, 0, b"x", false).unwrap();
    assert_eq!(perm(&fs), 0o6755);
    fs.write_killing(fh, 0, b"x", true).unwrap();
    assert_eq!(perm(&fs), 0o0755);
    chmod(0o6745);
    fs.write_killing(fh, 0, b"x", true).unwrap();
    assert_eq!(perm(&fs), 0o2745, "set-group-ID without group execute marks locking");
    // Any write drops file capabilities, and their bytes.
    fs.setxattr(Caller::ROOT, ino, n("security.capability"), b"caps", 0)
        .unwrap();
    fs.write(fh, 0, b"y").unwrap();
    assert_eq!(
        fs.getxattr(Caller::ROOT, ino, n("security.capability")),
        Err(FsError::NoAttr)
    );
    // Truncation: only by an unprivileged caller.
    chmod(0o4755);
    let trunc = SetAttr {
        size: Some(0),
        ..SetAttr::default()
    };
    fs.setattr(Caller::ROOT, ino, trunc).unwrap();
    assert_eq!(perm(&fs), 0o4755);
    fs.setattr(USER, ino, trunc).unwrap();
    assert_eq!(perm(&fs), 0o0755);
    // chown: always, even by root.
    chmod(0o4755);
    let chown = SetAttr {
        uid: Some(1000),
        ..SetAttr::default()
    };
    fs.setattr(Caller::ROOT, ino, chown).unwrap();
    assert_eq!(perm(&fs), 0o0755);
    fs.release(fh).unwrap();
}

fn spilling_fs(opts: &str) -> (tempfile::TempDir, Fs) {
    let parent = tempfile::tempdir().unwrap();
    let dir = crate::storage::spill::SpillDir::create(parent.path(), true).unwrap();
    let fs = Fs::with_spill_dir(&MountConfig::parse(opts).unwrap(), USER, Some(dir));
    (parent, fs)
}

/// A spilled, closed file "f" (100,000 bytes of 1), opened again and
/// passed through: its node, the handle and the kernel's descriptor.
fn passed_through_file(fs: &Fs) -> (NodeId, HandleId, std::fs::File) {
    let (ino, fh) = create(fs, NodeId::ROOT, "f");
    fs.write(fh, 0, &[1u8; 100_000]).unwrap();
    fs.release(fh).unwrap();
    let (a, OpenMode::Passthrough(file)) = fs.open_file(USER, ino, libc::O_RDWR, true).unwrap() else {
        panic!("a closed spilled file is passed through");
    };
    (ino, a, file)
}

#[test]
fn passthrough_takes_spilled_files_that_no_daemon_served_handle_holds() {
    use std::os::unix::fs::FileExt;
    let (_parent, fs) = spilling_fs("size=1g,spool=64k,passthrough=on");
    assert!(!fs.stateless_opens(), "the kernel must ask at every open");
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    fs.write(fh, 0, &[7u8; 100_000]).unwrap();
    assert_eq!(fs.tier(ino), Ok(Tier::Spill));
    // A handle served by the daemon is open: so is the next one.
    let (served, mode) = fs.open_file(USER, ino, libc::O_RDWR, true).unwrap();
    assert!(matches!(mode, OpenMode::Served), "{mode:?}");
    fs.release(served).unwrap();
    fs.release(fh).unwrap();
    // Not when the adapter's kernel cannot take it.
    let (h, mode) = fs.open_file(USER, ino, libc::O_RDWR, false).unwrap();
    assert!(matches!(mode, OpenMode::Served), "{mode:?}");
    fs.release(h).unwrap();

    // Closed: passed through, and so is a second open. What the kernel
    // writes to the descriptor is the file's size and contents.
    let (a, OpenMode::Passthrough(file)) = fs.open_file(USER, ino, libc::O_RDWR, true).unwrap() else {
        panic!("a closed spilled file is passed through");
    };
    let (b, mode) = fs.open_file(USER, ino, libc::O_RDONLY, true).unwrap();
    assert!(matches!(mode, OpenMode::Passthrough(_)), "{mode:?}");
    assert_eq!(fs.stats().passthrough_opens, 2);
    file.write_all_at(b"kernel", 100_000).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().size, 100_006);
    assert_eq!(fs.read(b, 99_998, 100).unwrap(), b"\x07\x07kernel");
    // The daemon's own writes keep the disk file's size exact.
    fs.write(a, 200_000, b"daemon").unwrap();
    assert_eq!(file.metadata().unwrap().len(), 200_006);
    // Cut far below the threshold: spilled while the kernel holds it,
    // back in RAM after the last close, contents intact.
    let cut = SetAttr {
        size: Some(10),
        ..SetAttr::default()
    };
    fs.setattr(USER, ino, cut).unwrap();
    assert_eq!(file.metadata().unwrap().len(), 10);
    assert_eq!(fs.tier(ino), Ok(Tier::Spill));
    fs.release(a).unwrap();
    assert_eq!(fs.tier(ino), Ok(Tier::Spill));
    fs.release(b).unwrap();
    assert_eq!(fs.tier(ino), Ok(Tier::Ram));
    assert_eq!(fs.stats().passthrough_opens, 0);
    let h = fs.open(USER, ino, libc::O_RDONLY).unwrap();
    assert_eq!(fs.read(h, 0, 100).unwrap(), [7u8; 10]);
}

#[test]
fn passthrough_writes_of_the_kernel_are_charged_when_the_daemon_looks() {
    use std::os::unix::fs::FileExt;
    let (_parent, fs) = spilling_fs("size=1g,spool=64k,passthrough=on");
    let (ino, a, file) = passed_through_file(&fs);
    file.write_all_at(&[2u8; 1 << 20], 1 << 20).unwrap();
    let attr = fs.getattr(ino).unwrap();
    assert_eq!(attr.size, 2 << 20);
    assert!(attr.blocks * 512 >= (1 << 20) + 100_000, "{} blocks", attr.blocks);
    fs.release(a).unwrap();
    // Charged: the disk blocks of both writes (the budget had only the
    // daemon's before).
    let bytes = fs.stats().bytes;
    assert!(bytes >= (1 << 20) + 100_000, "{bytes} bytes charged");
}

#[test]
fn passthrough_writes_count_against_size_before_the_file_closes() {
    use std::os::unix::fs::FileExt;
    let (_parent, fs) = spilling_fs("size=4m,spool=64k,passthrough=on");
    let (_, a, file) = passed_through_file(&fs);
    let free = fs.statfs().bfree;
    // What the kernel writes while it holds the file.
    file.write_all_at(&[2u8; 3 << 20], 0).unwrap();
    let bs = u64::from(BLOCK_SIZE);
    let now_free = fs.statfs().bfree;
    assert!(
        free - now_free >= ((3 << 20) - 100_000) / bs,
        "df does not see the kernel's writes: {free} -> {now_free} free blocks"
    );
    // The mount is nearly full now: another file's write no longer fits.
    let (_, other) = create(&fs, NodeId::ROOT, "g");
    assert_eq!(fs.write(other, 0, &[3u8; 2 << 20]), Err(FsError::NoSpace));
    fs.release(other).unwrap();
    fs.release(a).unwrap();
    assert!(fs.stats().bytes >= 3 << 20);
}

#[test]
fn the_spiller_charges_passthrough_writes_without_being_asked() {
    use std::os::unix::fs::FileExt;
    let (_parent, fs) = spilling_fs("size=1g,spool=64k,passthrough=on");
    let fs = Arc::new(fs);
    let background = fs.start_background().unwrap();
    let (_, a, file) = passed_through_file(&fs);
    let before = fs.budget.bytes();
    file.write_all_at(&[2u8; 4 << 20], 0).unwrap();
    // The spiller looks at least once a second; give it ten.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fs.budget.bytes() < before + (3 << 20) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let after = fs.budget.bytes();
    fs.release(a).unwrap();
    background.stop();
    assert!(after >= before + (3 << 20), "not charged: {before} -> {after} bytes");
}

#[test]
fn set_id_files_are_served_so_that_writes_still_drop_the_bits() {
    let (_parent, fs) = spilling_fs("size=1g,spool=64k,passthrough=on");
    let (ino, fh) = create(&fs, NodeId::ROOT, "suid");
    fs.write(fh, 0, &[7u8; 100_000]).unwrap();
    fs.release(fh).unwrap();
    let suid = SetAttr {
        mode: Some(0o4755),
        ..SetAttr::default()
    };
    fs.setattr(USER, ino, suid).unwrap();
    let (h, mode) = fs.open_file(USER, ino, libc::O_RDWR, true).unwrap();
    assert!(matches!(mode, OpenMode::Served), "{mode:?}");
    fs.release(h).unwrap();
    let plain = SetAttr {
        mode: Some(0o755),
        ..SetAttr::default()
    };
    fs.setattr(USER, ino, plain).unwrap();
    let (h, mode) = fs.open_file(USER, ino, libc::O_RDWR, true).unwrap();
    assert!(matches!(mode, OpenMode::Passthrough(_)), "{mode:?}");
    fs.release(h).unwrap();
}

/// Truncates (or extends) `ino` to `size`.
fn resize(fs: &Fs, ino: NodeId, size: u64) {
    let set = SetAttr {
        size: Some(size),
        ..SetAttr::default()
    };
    fs.setattr(USER, ino, set).unwrap();
}

#[test]
fn small_files_over_the_ram_budget_are_packed_into_a_shared_file() {
    // 600 files of 3,000 bytes hold 1.8 MB of RAM; the budget is 1 MiB.
    let (_parent, fs) = spilling_fs("size=64m,max_ram=1m");
    let files: Vec<(NodeId, HandleId)> = (0..600)
        .map(|i| {
            let (ino, fh) = create(&fs, NodeId::ROOT, &format!("f{i}"));
            fs.write(fh, 0, &[(i % 251) as u8; 3000]).unwrap();
            (ino, fh)
        })
        .collect();
    assert!(fs.stats().ram_bytes > 1 << 20);
    fs.relieve_pressure();
    let s = fs.stats();
    // Down to the low-water mark (90%), in one pack file.
    assert!(s.ram_bytes <= (1 << 20) - (1 << 20) / 10, "{s:?}");
    assert!(s.files_packed > 200 && s.files_packed == s.files_spilled, "{s:?}");
    assert_eq!(s.pack_files, 1, "{s:?}");
    // Each packed file holds one 4 KiB page of disk, charged to size=.
    assert_eq!(s.bytes, s.ram_bytes + s.files_packed * 4096, "{s:?}");
    for (i, (ino, fh)) in files.iter().enumerate() {
        assert_eq!(
            fs.read(*fh, 0, 10_000).unwrap(),
            vec![(i % 251) as u8; 3000],
            "file {i}"
        );
        assert_eq!(fs.getattr(*ino).unwrap().size, 3000);
    }
    let packed: Vec<(NodeId, HandleId)> = files
        .iter()
        .copied()
        .filter(|(ino, _)| fs.tier(*ino) == Ok(Tier::Packed))
        .collect();

    // Written within its slot, a packed file stays packed.
    let (ino, fh) = packed[0];
    fs.write(fh, 60_000, b"end").unwrap();
    assert_eq!(fs.tier(ino), Ok(Tier::Packed));
    assert_eq!(fs.lseek(fh, 4096, Whence::Data), Ok(57_344));
    assert_eq!(fs.lseek(fh, 0, Whence::Hole), Ok(4096));
    // Truncated and grown again, it reads zeros past the cut.
    resize(&fs, ino, 10);
    resize(&fs, ino, 64 << 10);
    let got = fs.read(fh, 0, 100_000).unwrap();
    assert_eq!(got.len(), 64 << 10);
    assert!(
        got[10..].iter().all(|b| *b == 0),
        "stale bytes after truncate and growth"
    );
    assert_eq!(fs.getattr(ino).unwrap().blocks, 8, "one page held");
    // Written past its slot, it moves out with its bytes.
    let head = got[..10].to_vec();
    let returns = fs.stats().returns;
    fs.write(fh, 100_000, b"far").unwrap();
    assert_eq!((fs.tier(ino), fs.stats().returns), (Ok(Tier::Ram), returns + 1));
    let got = fs.read(fh, 0, 200_000).unwrap();
    assert_eq!(
        (got.len(), &got[..10], &got[100_000..]),
        (100_003, &head[..], &b"far"[..])
    );
    assert!(got[10..100_000].iter().all(|b| *b == 0));

    // fallocate within the slot reserves pages; a punched hole frees them.
    let (ino, fh) = packed[1];
    fs.fallocate(fh, 0, 32 << 10, Fallocate::Allocate).unwrap();
    assert_eq!(
        (fs.tier(ino), fs.getattr(ino).unwrap().size),
        (Ok(Tier::Packed), 32 << 10)
    );
    fs.fallocate(fh, 0, 32 << 10, Fallocate::PunchHole).unwrap();
    assert_eq!(fs.getattr(ino).unwrap().blocks, 0);

    // Deleted, the files give everything back.
    for (i, (_, fh)) in files.iter().enumerate() {
        fs.release(*fh).unwrap();
        fs.unlink(USER, NodeId::ROOT, n(&format!("f{i}"))).unwrap();
    }
    for (ino, _) in &files {
        fs.forget(*ino, 1);
    }
    let s = fs.stats();
    assert_eq!((s.bytes, s.files_packed), (0, 0), "{s:?}");
}

#[test]
fn a_closed_spilled_file_is_charged_for_what_it_holds() {
    let (_parent, fs) = spilling_fs("size=64m,spool=64k");
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    fs.write(fh, 0, &[1; 3 << 20]).unwrap();
    // Past 3 MiB, the write reserves a step (to 4 MiB) ahead of the next.
    fs.write(fh, 3 << 20, b"x").unwrap();
    let open_blocks = fs.getattr(ino).unwrap().blocks;
    assert_eq!((open_blocks * 512, fs.stats().bytes), (4 << 20, 4 << 20));
    // A second handle keeps the step; the last close gives it back.
    let (fh2, _) = fs.open_file(USER, ino, libc::O_RDONLY, false).unwrap();
    fs.release(fh).unwrap();
    assert_eq!(fs.stats().bytes, 4 << 20);
    fs.release(fh2).unwrap();
    let held = (3 << 20) + 4096;
    assert_eq!((fs.getattr(ino).unwrap().blocks * 512, fs.stats().bytes), (held, held));
    let (fh, _) = fs.open_file(USER, ino, libc::O_RDONLY, false).unwrap();
    let got = fs.read(fh, (3 << 20) - 1, 10).unwrap();
    assert_eq!(got, [1, b'x']);
}

#[test]
fn a_spill_near_a_full_mount_does_not_need_room_for_the_file_twice() {
    // 1.9 MiB in RAM over max_ram=1m, with 3 MiB of size=: the disk copy
    // and the RAM copy together would not fit, but the move changes
    // nothing the mount holds.
    let (_parent, fs) = spilling_fs("size=3m,max_ram=1m,spool=2m");
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    let data: Vec<u8> = (0..1_900_000u32).map(|i| (i % 253) as u8).collect();
    fs.write(fh, 0, &data).unwrap();
    fs.relieve_pressure();
    let s = fs.stats();
    assert_eq!(
        (fs.tier(ino), s.spill_failures, s.ram_bytes),
        (Ok(Tier::Spill), 0, 0),
        "{s:?}"
    );
    assert!(s.bytes < 2 << 20 && s.bytes >= 1_900_000, "{s:?}");
    assert_eq!(fs.read(fh, 0, 2 << 20).unwrap(), data);
    // And the limit still holds for writes.
    assert_eq!(fs.write(fh, 1_900_000, &[1; 2 << 20]), Err(FsError::NoSpace));
}

#[test]
fn a_small_file_with_blocks_reserved_past_a_slot_is_spilled_or_left_never_miscounted() {
    let (_parent, fs) = spilling_fs("size=64m,max_ram=64k");
    // Size 0 with 128 KiB reserved (fallocate KEEP_SIZE): too much for a
    // slot, enough for a spill file.
    let (big, fh) = create(&fs, NodeId::ROOT, "reserved");
    fs.fallocate(fh, 0, 128 << 10, Fallocate::KeepSize).unwrap();
    // 10 bytes and one page reserved at 100 KiB: neither.
    let (small, fh) = create(&fs, NodeId::ROOT, "small");
    fs.write(fh, 0, b"0123456789").unwrap();
    fs.fallocate(fh, 100 << 10, 4096, Fallocate::KeepSize).unwrap();
    fs.relieve_pressure();
    assert_eq!((fs.tier(big), fs.tier(small)), (Ok(Tier::Spill), Ok(Tier::Ram)));
    let s = fs.stats();
    assert_eq!((s.spills, s.files_spilled, s.files_packed), (1, 1, 0), "{s:?}");
    assert_eq!(fs.read(fh, 0, 100).unwrap(), b"0123456789");
}

#[test]
fn writers_past_the_budget_move_their_own_files_out_when_the_spiller_is_behind() {
    // No spiller thread runs: only the writers hold the budget. 64 files
    // of 128 KiB, written 16 KiB at a time, are 8 MiB for a 1 MiB budget.
    let (_parent, fs) = spilling_fs("size=1g,max_ram=1m,spool=1m");
    let (max, piece) = (1u64 << 20, 16usize << 10);
    let mut files = Vec::new();
    for i in 0..64u8 {
        let (ino, fh) = create(&fs, NodeId::ROOT, &format!("f{i}"));
        for off in (0..128 << 10).step_by(piece) {
            fs.write(fh, off, &vec![i; piece]).unwrap();
        }
        files.push((ino, fh));
    }
    // Past the hard limit (a sixteenth over) by one chunk at most: the
    // write that crossed it, before its file moved out.
    let s = fs.stats();
    let chunk = crate::storage::ram::CHUNK_SIZE as u64;
    assert!(s.ram_high_water <= max + max / 16 + chunk, "{s:?}");
    assert!(s.files_spilled >= 50 && s.spill_failures == 0, "{s:?}");
    for (i, (_, fh)) in files.iter().enumerate() {
        assert!(
            fs.read(*fh, 0, 1 << 20).unwrap() == vec![i as u8; 128 << 10],
            "file {i}"
        );
    }
}

#[test]
fn a_truncated_file_comes_back_to_ram_only_when_the_budget_has_room() {
    let (_parent, fs) = spilling_fs("size=1g,max_ram=1m,spool=64k");
    let (big, fh) = create(&fs, NodeId::ROOT, "big");
    fs.write(fh, 0, &[9u8; 200_000]).unwrap();
    assert_eq!(fs.tier(big), Ok(Tier::Spill));
    // Sixteen files of 64 KiB fill the budget.
    let fill: Vec<NodeId> = (0..16)
        .map(|i| {
            let (ino, h) = create(&fs, NodeId::ROOT, &format!("f{i}"));
            fs.write(h, 0, &[1u8; 64 << 10]).unwrap();
            fs.release(h).unwrap();
            ino
        })
        .collect();
    let s = fs.stats();
    assert!(s.ram_bytes + 1000 > s.max_ram, "{s:?}");
    // Cut far below the threshold, it stays on disk: RAM has no room.
    resize(&fs, big, 1000);
    assert_eq!(fs.tier(big), Ok(Tier::Spill));
    // With room again, the next cut brings it back.
    fs.unlink(USER, NodeId::ROOT, n("f0")).unwrap();
    fs.forget(fill[0], 1);
    resize(&fs, big, 900);
    assert_eq!(fs.tier(big), Ok(Tier::Ram));
    assert_eq!(fs.read(fh, 0, 2000).unwrap(), vec![9u8; 900]);
}

/// A file of `n` bytes whose every 4 KiB block tells where it is.
fn numbered(n: usize, salt: u8) -> Vec<u8> {
    (0..n)
        .map(|i| ((i >> 12) as u8).wrapping_mul(31).wrapping_add(salt))
        .collect()
}

/// Writes `data` at `off` through `fh`, 1 MiB at a time as the kernel
/// sends it, and into `model`.
fn write_both(fs: &Fs, fh: HandleId, model: &mut Vec<u8>, off: usize, data: &[u8]) {
    for (i, piece) in data.chunks(1 << 20).enumerate() {
        fs.write(fh, (off + (i << 20)) as u64, piece).unwrap();
    }
    if model.len() < off + data.len() {
        model.resize(off + data.len(), 0);
    }
    model[off..off + data.len()].copy_from_slice(data);
}

/// A spilling file system whose large files are copied out in the
/// background, as if the spool thread served the queue: the test takes
/// the steps itself with `advance_copies`.
fn copying_fs(opts: &str) -> (tempfile::TempDir, Fs) {
    let (parent, fs) = spilling_fs(opts);
    fs.tiers.moves.served.store(true, Ordering::Release);
    (parent, fs)
}

#[test]
fn a_large_file_crossing_the_spool_threshold_is_copied_out_while_its_writer_goes_on() {
    const MIB: usize = 1 << 20;
    let (_parent, fs) = copying_fs("size=1g,spool=40m");
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    let mut model = Vec::new();
    for i in 0..41 {
        write_both(&fs, fh, &mut model, i * MIB, &numbered(MIB, i as u8));
    }
    // Past 40 MiB: the copy has begun and the file is still in RAM.
    assert_eq!(fs.tier(ino), Ok(Tier::Ram));
    assert!(fs.stats().ram_bytes > 40 << 20);
    assert!(fs.advance_copies(2), "the copy is not done after two steps");
    // Changes behind the copy (which holds the first 8 MiB now), across
    // its edge, ahead of it, and growth; all served from RAM meanwhile.
    write_both(&fs, fh, &mut model, MIB + 5, b"behind the copy");
    fs.fallocate(fh, 4 * MIB as u64, MIB as u64, Fallocate::PunchHole)
        .unwrap();
    model[4 * MIB..5 * MIB].fill(0);
    write_both(&fs, fh, &mut model, 8 * MIB - 3, b"across the edge");
    write_both(&fs, fh, &mut model, 30 * MIB, b"ahead of the copy");
    for i in 41..44 {
        write_both(&fs, fh, &mut model, i * MIB, &numbered(MIB, 100 + i as u8));
    }
    assert_eq!(fs.tier(ino), Ok(Tier::Ram));
    assert!(fs.read(fh, 0, model.len() as u32 + 10).unwrap() == model);
    // The rest: the file trades places with its copy.
    assert!(!fs.advance_copies(usize::MAX));
    let s = fs.stats();
    assert_eq!(
        (fs.tier(ino), s.spills, s.spill_failures, s.ram_bytes),
        (Ok(Tier::Spill), 1, 0, 0),
        "{s:?}"
    );
    assert_eq!(s.bytes, fs.getattr(ino).unwrap().blocks * 512, "{s:?}");
    assert!(fs.read(fh, 0, model.len() as u32 + 10).unwrap() == model);
}

#[test]
fn a_copy_out_starts_over_from_a_truncation_behind_it() {
    const MIB: usize = 1 << 20;
    let (_parent, fs) = copying_fs("size=1g,spool=40m");
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    let mut model = Vec::new();
    write_both(&fs, fh, &mut model, 0, &numbered(41 * MIB, 1));
    assert!(fs.advance_copies(4));
    // Cut to 6 MiB (behind the copy's 16 MiB), then written again past
    // a gap, back over the threshold: the copy must not keep its old
    // bytes in the gap.
    resize(&fs, ino, 6 * MIB as u64);
    model.truncate(6 * MIB);
    write_both(&fs, fh, &mut model, 12 * MIB, &numbered(36 * MIB, 2));
    assert!(!fs.advance_copies(usize::MAX));
    assert_eq!(fs.tier(ino), Ok(Tier::Spill));
    let got = fs.read(fh, 0, model.len() as u32 + 10).unwrap();
    assert_eq!(got.len(), model.len());
    assert!(got[6 * MIB..12 * MIB].iter().all(|b| *b == 0), "old bytes in the gap");
    assert!(got == model);
}

#[test]
fn a_copy_out_is_dropped_when_its_file_goes_or_moves_by_other_means() {
    const MIB: usize = 1 << 20;
    let (_parent, fs) = copying_fs("size=1g,spool=40m");
    // Deleted and closed while being copied: its memory goes back, the
    // copy with it.
    let (gone, fh) = create(&fs, NodeId::ROOT, "gone");
    write_both(&fs, fh, &mut Vec::new(), 0, &numbered(41 * MIB, 3));
    assert!(fs.advance_copies(1));
    fs.unlink(USER, NodeId::ROOT, n("gone")).unwrap();
    fs.release(fh).unwrap();
    fs.forget(gone, 1);
    assert!(!fs.advance_copies(usize::MAX));
    let s = fs.stats();
    assert_eq!((s.bytes, s.ram_bytes, s.spills), (0, 0, 0), "{s:?}");
    // A writer that outruns its copy by half the threshold moves the file
    // at once; the copy, no longer of that file, is dropped.
    let (ino, fh) = create(&fs, NodeId::ROOT, "fast");
    let mut data = Vec::new();
    write_both(&fs, fh, &mut data, 0, &numbered(61 * MIB, 4));
    assert_eq!(fs.tier(ino), Ok(Tier::Spill));
    assert!(!fs.advance_copies(usize::MAX));
    let s = fs.stats();
    assert_eq!((s.spills, s.ram_bytes), (1, 0), "{s:?}");
    assert!(fs.read(fh, 0, data.len() as u32).unwrap() == data);
}

#[test]
fn small_files_crossing_the_spool_threshold_move_at_once_even_with_the_spool_thread() {
    let (_parent, fs) = copying_fs("size=1g,spool=1m");
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    fs.write(fh, 0, &numbered(2 << 20, 5)).unwrap();
    assert_eq!(fs.tier(ino), Ok(Tier::Spill));
    assert!(!fs.advance_copies(usize::MAX), "nothing was queued");
}

#[test]
fn a_file_truncated_far_under_the_threshold_during_its_copy_stays_in_ram() {
    const MIB: usize = 1 << 20;
    let (_parent, fs) = copying_fs("size=1g,spool=40m");
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    let mut model = Vec::new();
    write_both(&fs, fh, &mut model, 0, &numbered(41 * MIB, 6));
    assert!(fs.advance_copies(2));
    // Emptied for reuse, as temp files often are: no reason to leave RAM.
    resize(&fs, ino, 0);
    assert!(!fs.advance_copies(usize::MAX));
    let s = fs.stats();
    assert_eq!((fs.tier(ino), s.spills, s.bytes), (Ok(Tier::Ram), 0, 0), "{s:?}");
    // Past the threshold again: a new copy, and this one finishes.
    model.clear();
    write_both(&fs, fh, &mut model, 0, &numbered(41 * MIB, 7));
    assert_eq!(fs.tier(ino), Ok(Tier::Ram));
    assert!(!fs.advance_copies(usize::MAX));
    assert_eq!(fs.tier(ino), Ok(Tier::Spill));
    assert!(fs.read(fh, 0, model.len() as u32).unwrap() == model);
}

#[test]
fn a_file_rewritten_in_place_at_the_threshold_stays_in_ram_until_it_grows() {
    const MIB: usize = 1 << 20;
    let (_parent, fs) = copying_fs("size=1g,spool=40m");
    let (ino, fh) = create(&fs, NodeId::ROOT, "f");
    let mut model = Vec::new();
    // Exactly the threshold: not over it yet.
    write_both(&fs, fh, &mut model, 0, &numbered(40 * MIB, 8));
    assert_eq!(fs.tier(ino), Ok(Tier::Ram));
    // Random 4 KiB writes inside it (fio's randwrite on a laid-out file)
    // add nothing: no crossing, no copy begun (each would make a spill
    // file).
    for i in 0..64u64 {
        let off = (i * 7_919 * 4096) % (40 * MIB as u64 - 4096);
        write_both(&fs, fh, &mut model, off as usize, &numbered(4096, i as u8));
        fs.advance_copies(1);
    }
    assert_eq!(fs.tier(ino), Ok(Tier::Ram));
    assert_eq!(fs.tiers.moves.next_id.load(Ordering::Relaxed), 0, "copies begun");
    // One write past the end crosses: one copy, finished, even with more
    // writes inside the file while it runs.
    let end = model.len();
    write_both(&fs, fh, &mut model, end, &numbered(4096, 99));
    for i in 0..16u64 {
        let off = (i * 7_919 * 4096) % (40 * MIB as u64);
        write_both(&fs, fh, &mut model, off as usize, &numbered(4096, i as u8));
        fs.advance_copies(1);
    }
    assert!(!fs.advance_copies(usize::MAX));
    let s = fs.stats();
    assert_eq!((fs.tier(ino), s.spills), (Ok(Tier::Spill), 1), "{s:?}");
    assert_eq!(fs.tiers.moves.next_id.load(Ordering::Relaxed), 1, "copies begun");
    assert!(fs.read(fh, 0, model.len() as u32 + 10).unwrap() == model);
}
