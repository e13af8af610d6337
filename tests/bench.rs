//! `tmpfsd bench`: it measures, reports in every form it promises, and
//! leaves no mount, scratch directory or spill directory behind.

use std::fs;
use std::process::Command;

use serde_json::{json, Value};
use tmpfsd::sys;

use crate::common::{bin, MountGuard};

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("bench")
        .args(args)
        .output()
        .expect("run tmpfsd bench")
}

fn no_bench_mounts() -> bool {
    sys::mounts()
        .unwrap()
        .iter()
        .all(|m| !m.mount_point.to_string_lossy().contains("tmpfsd-bench."))
}

#[test]
fn bench_mistakes_get_one_line() {
    for (args, needle) in [
        (vec!["--only", "seq,bogus"], "unknown workload 'bogus'"),
        (vec!["--plot", "/tmp/chart.png"], "must name an .svg file"),
        (vec!["--reps", "0"], "--reps"),
        (vec!["/nonexistent/dir"], "cannot measure /nonexistent/dir"),
        (vec!["-o", "spool=0"], "spool"),
    ] {
        let out = bench(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err:?} does not mention {needle:?}");
    }
}

#[test]
fn bench_measures_private_mount_disk_and_tmpfs() {
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("chart.svg");
    let out = bench(&[
        "--quick",
        "--reps",
        "2",
        "--only",
        "small,meta,probe,tree",
        "-o",
        "passthrough=on",
        "--json",
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {err}");
    // Progress: one line per workload, target and repetition.
    assert!(err.lines().filter(|l| l.starts_with("[2/2")).count() >= 2, "{err}");
    let j: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(j["repetitions"], 2);
    // The machine is named with the figures, its FUSE wake-up setting as
    // the kernel shows it (absent where the kernel has no such parameter).
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(j["host"]["cpus"], cpus, "{}", j["host"]);
    let wake_here = fs::read_to_string("/sys/module/fuse/parameters/wake_here")
        .ok()
        .map(|s| s.trim() == "Y");
    assert_eq!(j["host"]["fuse_wake_here"], json!(wake_here), "{}", j["host"]);
    let haltpoll =
        fs::read_to_string("/sys/devices/system/cpu/cpuidle/current_driver").is_ok_and(|d| d.trim() == "haltpoll");
    let halt_poll_ns = fs::read_to_string("/sys/module/haltpoll/parameters/guest_halt_poll_ns")
        .ok()
        .filter(|_| haltpoll)
        .map(|s| s.trim().parse::<u64>().unwrap());
    assert_eq!(j["host"]["guest_halt_poll_ns"], json!(halt_poll_ns), "{}", j["host"]);
    let kinds: Vec<&str> = j["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds[0], "tmpfsd", "{kinds:?}");
    assert_eq!(
        j["targets"][0]["mount_options"], "passthrough=on",
        "the options are reported"
    );
    let metrics: Vec<&str> = j["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert_eq!(
        metrics,
        [
            "small_create_unlink",
            "stat_hot",
            "open_close",
            "getxattr_missing",
            "untar",
            "rm_rf"
        ]
    );
    for m in j["metrics"].as_array().unwrap() {
        for r in m["results"].as_array().unwrap() {
            let samples = r["samples"].as_array().unwrap();
            assert_eq!(samples.len(), 2, "{m}");
            assert!(r["median"].as_f64().unwrap() > 0.0, "{m}");
        }
    }
    if kinds.contains(&"tmpfs") {
        let r = &j["metrics"][0]["results"][0]["ratio_to_tmpfs"];
        assert!(r.as_f64().unwrap() > 0.0, "{r}");
    }
    // The private mount's requests, per workload: each small file is
    // unlinked by exactly one request.
    let requests = j["requests"].as_array().unwrap();
    let workloads: Vec<&str> = requests.iter().map(|r| r["workload"].as_str().unwrap()).collect();
    assert_eq!(workloads, ["small", "meta", "probe", "tree"]);
    for r in requests {
        assert_eq!(r["totals"].as_array().unwrap().len(), 2, "{r}");
        assert!(r["median"].as_u64().unwrap() > 0, "{r}");
    }
    assert_eq!(
        requests[0]["by_kind"]["unlink"], requests[0]["units"],
        "{}",
        requests[0]
    );
    // The probe's calls are each one round trip.
    assert_eq!(
        requests[2]["by_kind"]["getxattr"], requests[2]["units"],
        "{}",
        requests[2]
    );
    let chart = fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("small_create_unlink"));
    assert!(
        chart.contains("tmpfsd mounted with -o passthrough=on"),
        "the plot says how tmpfsd was mounted"
    );
    assert!(no_bench_mounts(), "the private mount survived the run");
    for base in ["/var/tmp", "/dev/shm"] {
        if let Ok(entries) = fs::read_dir(base) {
            let left: Vec<_> = entries
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("tmpfsd-bench."))
                .collect();
            assert!(left.is_empty(), "scratch directories left in {base}: {left:?}");
        }
    }
}

#[test]
fn bench_on_given_directories_names_what_they_are() {
    let m = MountGuard::new("");
    let plain = tempfile::tempdir_in("/var/tmp").unwrap();
    let out = bench(&[
        "--quick",
        "--reps",
        "1",
        "--only",
        "named",
        m.path().to_str().unwrap(),
        plain.path().to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {err}");
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("(a tmpfsd mount)"), "{table}");
    assert!(table.contains("(disk)"), "{table}");
    assert!(table.contains("named_tempfile_64k"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("host: ") && l.contains(" CPU")),
        "{table}"
    );
    // Columns are headed by the last component; the legend has the path.
    let name = plain.path().file_name().unwrap().to_str().unwrap();
    let header = table.lines().find(|l| l.starts_with("metric")).unwrap();
    assert!(header.split_whitespace().any(|c| c == name), "{header}");
    assert!(table.contains(plain.path().to_str().unwrap()), "{table}");
    // A tmpfsd mount has its requests counted, another directory not.
    let m_name = m.path().file_name().unwrap().to_str().unwrap();
    assert!(
        table.contains(&format!("requests the kernel sent {m_name} (")),
        "{table}"
    );
    assert!(
        !table.contains(&format!("requests the kernel sent {name} (")),
        "{table}"
    );
    // Exactly: one UNLINK and one capability check (GETXATTR) per small
    // file, the GETXATTRs that read the counters left out.
    let out = bench(&[
        "--quick",
        "--reps",
        "1",
        "--only",
        "small",
        "--json",
        m.path().to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    let small = &j["requests"][0];
    assert_eq!(small["workload"], "small", "{j}");
    assert_eq!(small["by_kind"]["unlink"], small["units"], "{small}");
    assert_eq!(small["by_kind"]["getxattr"], small["units"], "{small}");
    // The given directories are left as they were.
    assert_eq!(fs::read_dir(m.path()).unwrap().count(), 0);
    assert_eq!(fs::read_dir(plain.path()).unwrap().count(), 0);
}
