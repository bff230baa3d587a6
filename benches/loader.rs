//! The manifest loader on big and hostile input: time and peak memory (VmHWM) per case.
//! `cargo bench --bench loader`. Each case runs in a process of its own, so each peak is
//! that case's alone; the run fails when a case goes over its memory bound or loads
//! something other than expected. The input is written to disk before the peak is
//! sampled, and streamed to disk, so the figures are the loader's.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use expensify_operator::files::loader;

#[path = "../tests/support/mod.rs"]
mod support;
use support::bench::peak_rss_kib;

const CHILD: &str = "EXPENSIFY_LOADER_BENCH_CASE";
const CONNECTOR: &str = "apiVersion: expensify.gitops.dev/v1alpha1\nkind: ExpensifyConnector\nmetadata: {name: acme, namespace: finance}\nspec:\n  credentialsSecretRef: {name: expensify-credentials}\n  adminEmail: it-admin@acme.example\n";

/// A case: its name, the most memory it may take (MiB), and what it must load.
struct Case {
    name: &'static str,
    bound_mib: u64,
    write: fn(&Path),
    /// PolicyAccess objects loaded, and whether any problem is expected.
    accesses: usize,
    problems: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "10,000 documents in one file",
        bound_mib: 96,
        write: |dir| write_documents(&dir.join("all.yaml"), 10_000, 1),
        accesses: 10_000,
        problems: false,
    },
    Case {
        name: "10,000 files",
        bound_mib: 96,
        write: |dir| {
            for i in 0..10_000 {
                let sub = dir.join(format!("team-{}", i / 100));
                std::fs::create_dir_all(&sub).unwrap();
                std::fs::write(sub.join(format!("{i}.yaml")), access(i, 1)).unwrap();
            }
        },
        accesses: 10_000,
        problems: false,
    },
    Case {
        name: "one object with 10,000 members",
        bound_mib: 64,
        write: |dir| write_documents(&dir.join("big.yaml"), 1, 10_000),
        accesses: 1,
        problems: false,
    },
    Case {
        name: "a 28 MiB file (5,000 objects x 100 members)",
        bound_mib: 256,
        write: |dir| write_documents(&dir.join("big.yaml"), 5_000, 100),
        accesses: 5_000,
        problems: false,
    },
    Case {
        name: "a 50 MB file (refused)",
        bound_mib: 32,
        write: |dir| {
            let file = std::fs::File::create(dir.join("big.yaml")).unwrap();
            file.set_len(50 * 1024 * 1024).unwrap();
        },
        accesses: 0,
        problems: true,
    },
    Case {
        name: "an alias bomb (10^9 nodes if expanded)",
        bound_mib: 64,
        write: |dir| {
            let mut text = "a: &a [x,x,x,x,x,x,x,x,x,x]\n".to_string();
            let mut previous = 'a';
            for level in 'b'..='i' {
                text.push_str(&format!(
                    "{level}: &{level} [{}]\n",
                    vec![format!("*{previous}"); 10].join(",")
                ));
                previous = level;
            }
            std::fs::write(dir.join("bomb.yaml"), text).unwrap();
        },
        accesses: 0,
        problems: true,
    },
    Case {
        name: "200,000-deep nesting",
        bound_mib: 32,
        write: |dir| {
            let text = format!("{}{}\n", "[".repeat(200_000), "]".repeat(200_000));
            std::fs::write(dir.join("deep.yaml"), text).unwrap();
        },
        accesses: 0,
        problems: true,
    },
];

fn access(i: usize, members: usize) -> String {
    let mut text = format!(
        "apiVersion: expensify.gitops.dev/v1alpha1\nkind: PolicyAccess\nmetadata: {{name: team-{i}, namespace: finance}}\nspec:\n  connectorRef: {{name: acme}}\n  policy: {{id: \"P{i:015}\"}}\n  mode: Authoritative\n  members:\n"
    );
    for m in 0..members {
        text.push_str(&format!(
            "    - {{email: person-{m}-of-{i}@acme.example, role: user}}\n"
        ));
    }
    text
}

/// `documents` objects of `members` members each, streamed to `path`.
fn write_documents(path: &Path, documents: usize, members: usize) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..documents {
        out.write_all(b"---\n").unwrap();
        out.write_all(access(i, members).as_bytes()).unwrap();
    }
    out.flush().unwrap();
}

/// In the child: writes the case, loads it, checks it, prints `seconds peak_kib bytes`.
fn run_case(name: &str) {
    let case = CASES.iter().find(|c| c.name == name).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("connector.yaml"), CONNECTOR).unwrap();
    (case.write)(dir.path());
    let bytes: u64 = walk_bytes(dir.path());
    let started = Instant::now();
    let manifests = loader::load(dir.path(), &[]).unwrap();
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(manifests.accesses.len(), case.accesses, "{name}");
    assert_eq!(
        !manifests.problems.is_empty(),
        case.problems,
        "{name}: {:?}",
        manifests.problems.first()
    );
    println!("{seconds} {} {bytes}", peak_rss_kib("self"));
}

fn walk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                walk_bytes(&e.path())
            } else {
                meta.len()
            }
        })
        .sum()
}

fn main() {
    if let Ok(case) = std::env::var(CHILD) {
        run_case(&case);
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let mut over = Vec::new();
    println!(
        "{:<46} {:>10} {:>10} {:>14} {:>10}",
        "case", "input MiB", "load s", "peak RSS MiB", "bound MiB"
    );
    for case in CASES {
        let output = Command::new(&exe).env(CHILD, case.name).output().unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            case.name,
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let fields: Vec<f64> = text
            .split_whitespace()
            .map(|f| f.parse().unwrap())
            .collect();
        let [seconds, peak_kib, bytes] = fields[..] else {
            panic!("{}: unexpected output {text}", case.name);
        };
        let peak_mib = peak_kib / 1024.0;
        println!(
            "{:<46} {:>10.1} {:>10.3} {:>14.1} {:>10}",
            case.name,
            bytes / (1024.0 * 1024.0),
            seconds,
            peak_mib,
            case.bound_mib
        );
        if peak_mib > case.bound_mib as f64 {
            over.push(case.name);
        }
    }
    assert!(over.is_empty(), "over the memory bound: {over:?}");
}
