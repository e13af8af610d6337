//! In-process costs of the core and the storage tiers, without a mount:
//! `cargo bench` (or `cargo bench --bench core -- NAME` for one group).
//! What a FUSE round trip adds on top is measured by `tmpfsd bench`.

use std::ffi::OsString;
use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tmpfsd::core::HandleId;
use tmpfsd::storage::budget::Budget;
use tmpfsd::storage::ram::RamFile;
use tmpfsd::storage::spill::SpillDir;
use tmpfsd::storage::FileData;
use tmpfsd::{Caller, Fs, MountConfig, NodeId};

const MIB: usize = 1 << 20;

fn chunks(c: &mut Criterion) {
    let budget = Budget::new(u64::MAX, u64::MAX);
    let block = vec![7u8; MIB];
    let mut g = c.benchmark_group("ram");
    g.throughput(Throughput::Bytes(64 * MIB as u64));
    g.bench_function("append_64MiB_in_1MiB_writes", |b| {
        b.iter_batched_ref(
            RamFile::new,
            |f| {
                for i in 0..64u64 {
                    f.write_at(i * MIB as u64, &block, &budget).unwrap();
                }
            },
            BatchSize::PerIteration,
        );
    });
    let mut full = RamFile::new();
    for i in 0..64u64 {
        full.write_at(i * MIB as u64, &block, &budget).unwrap();
    }
    g.bench_function("overwrite_64MiB_in_1MiB_writes", |b| {
        b.iter(|| {
            for i in 0..64u64 {
                full.write_at(i * MIB as u64, &block, &budget).unwrap();
            }
        });
    });
    let mut buf = vec![0u8; MIB];
    g.bench_function("read_64MiB_in_1MiB_reads", |b| {
        b.iter(|| {
            for i in 0..64u64 {
                black_box(full.read_at(i * MIB as u64, &mut buf));
            }
        });
    });
    g.throughput(Throughput::Elements(1));
    let small = [1u8; 4096];
    let mut at = 0u64;
    g.bench_function("write_4KiB_random", |b| {
        b.iter(|| {
            at = (at + 7919 * 4096) % (64 * MIB as u64);
            full.write_at(at, &small, &budget).unwrap();
        });
    });
    g.finish();
}

fn namespace(c: &mut Criterion) {
    let fs = Fs::new(&MountConfig::ram_only(u64::MAX, u64::MAX), Caller::ROOT);
    let dir = fs
        .mkdir(Caller::ROOT, NodeId::ROOT, "d".as_ref(), 0o755)
        .unwrap()
        .attr
        .ino;
    let names: Vec<OsString> = (0..10_000).map(|i| format!("f{i}").into()).collect();
    for n in &names {
        let (_, fh) = fs.create(Caller::ROOT, dir, n, 0o644, libc::O_WRONLY).unwrap();
        fs.release(fh).unwrap();
    }
    let mut g = c.benchmark_group("namespace");
    let mut i = 0;
    g.bench_function("lookup_in_10k_dir", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            let e = fs.lookup(dir, &names[i]).unwrap();
            fs.forget(e.attr.ino, 1);
        });
    });
    let data = [3u8; 4096];
    g.bench_function("create_write_4KiB_release_unlink", |b| {
        b.iter(|| {
            let (e, fh) = fs
                .create(Caller::ROOT, dir, "tmp".as_ref(), 0o600, libc::O_WRONLY)
                .unwrap();
            fs.write(fh, 0, &data).unwrap();
            fs.release(fh).unwrap();
            fs.unlink(Caller::ROOT, dir, "tmp".as_ref()).unwrap();
            fs.forget(e.attr.ino, 1);
        });
    });
    g.bench_function("stateless_read_4KiB", |b| {
        let e = fs.lookup(dir, &names[0]).unwrap();
        let fh = HandleId::stateless(e.attr.ino);
        fs.write(fh, 0, &data).unwrap();
        b.iter(|| black_box(fs.read(fh, 0, 4096).unwrap()));
    });
    // Last in the group: the throughput stays set.
    g.throughput(Throughput::Elements(names.len() as u64));
    g.bench_function("readdirplus_10k_dir", |b| {
        b.iter(|| {
            let mut listed = 0u64;
            fs.readdirplus(dir, 0, |_, entry| {
                listed += black_box(entry.attr.size) + 1;
                false
            })
            .unwrap();
            listed
        });
    });
    g.finish();
}

fn tiers(c: &mut Criterion) {
    let parent = tempfile::tempdir_in("/var/tmp").expect("a disk directory for spill files");
    let dir = SpillDir::create(parent.path(), true).unwrap();
    let budget = Budget::new(u64::MAX, u64::MAX);
    let block = vec![5u8; MIB];
    let mut g = c.benchmark_group("tiers");
    g.throughput(Throughput::Bytes(16 * MIB as u64));
    g.sample_size(20);
    let filled = || {
        let mut f = FileData::default();
        for i in 0..16u64 {
            f.write_at(i * MIB as u64, &block, &budget).unwrap();
        }
        f
    };
    g.bench_function("spill_16MiB", |b| {
        b.iter_batched_ref(
            filled,
            |f| {
                f.spill(&dir, &budget).unwrap();
                f.release(&budget);
            },
            BatchSize::PerIteration,
        );
    });
    g.bench_function("return_16MiB_to_ram", |b| {
        b.iter_batched_ref(
            || {
                let mut f = filled();
                f.spill(&dir, &budget).unwrap();
                f
            },
            |f| {
                f.unspill(&budget).unwrap();
                f.release(&budget);
            },
            BatchSize::PerIteration,
        );
    });
    let mut spilled = filled();
    spilled.spill(&dir, &budget).unwrap();
    g.bench_function("spilled_overwrite_16MiB_in_1MiB_writes", |b| {
        b.iter(|| {
            for i in 0..16u64 {
                spilled.write_at(i * MIB as u64, &block, &budget).unwrap();
            }
        });
    });
    let mut buf = vec![0u8; MIB];
    g.bench_function("spilled_read_16MiB_in_1MiB_reads", |b| {
        b.iter(|| {
            for i in 0..16u64 {
                black_box(spilled.read_at(i * MIB as u64, &mut buf).unwrap());
            }
        });
    });
    spilled.release(&budget);
    g.finish();
}

criterion_group!(benches, chunks, namespace, tiers);
criterion_main!(benches);
