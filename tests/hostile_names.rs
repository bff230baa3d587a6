//! A policy name is the attacker's: whoever can rename a policy in Expensify writes it.
//! The real commands, against a simulator whose policies carry hostile names, print
//! nothing that a terminal, a CI runner, a Markdown renderer or a spreadsheet would act on;
//! JSON keeps the name exactly.

mod support;

use std::process::Output;

use support::*;

/// Aimed at a terminal (clear the screen, overwrite the line, a C1 CSI), a CI runner (a
/// workflow command at the start of the value and after a line break), YAML 1.1 (NEL, LS),
/// a pull-request comment (a mention, links, HTML, a table break, a bidi override).
const TERMINAL_AND_MARKDOWN: &str = "::warning::pwned\x1b[2J\rFinance\n::add-mask::x\u{9b}31m\u{85}\u{2028} @everyone https://evil.example www.evil.example <b>bold</b> | \u{202E}nimda";

/// Aimed at a spreadsheet opening `review -o csv`.
const FORMULA: &str = "=HYPERLINK(\"https://evil.example\",\"Engineering\")";

async fn hostile_simulator() -> expensify_operator::simulator::SimulatorHandle {
    let mut seed = unlimited_seed();
    for policy in &mut seed.policies {
        if policy.id == FINANCE {
            policy.name = TERMINAL_AND_MARKDOWN.to_string();
        } else if policy.id == ENGINEERING {
            policy.name = FORMULA.to_string();
        }
    }
    start(&seed).await
}

async fn run(sim: &expensify_operator::simulator::SimulatorHandle, args: &[&str]) -> Output {
    binary(&sim.endpoint(), args, ADMIN_SECRET)
        .output()
        .await
        .unwrap()
}

/// Nothing a terminal or a CI runner acts on, in all the command printed.
fn assert_inert_for_terminals(what: &str, output: &Output) {
    let text = printed(output);
    for c in ['\x1b', '\r', '\u{9b}', '\u{85}', '\u{2028}', '\u{202E}'] {
        assert!(!text.contains(c), "{what}: {c:?} printed:\n{text}");
    }
    for line in text.lines() {
        assert!(
            !line.trim_start().starts_with("::"),
            "{what}: a workflow command: {line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plan_and_apply_text_show_a_hostile_name_escaped() {
    let sim = hostile_simulator().await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let planned = run(&sim, &["plan", dir]).await;
    assert_eq!(planned.status.code(), Some(2), "{}", printed(&planned));
    assert_inert_for_terminals("plan", &planned);
    let text = printed(&planned);
    assert!(
        text.contains("  \\::warning::pwned\\u{1b}[2J\\rFinance\\n::add-mask::x"),
        "{text}"
    );

    let applied = run(&sim, &["apply", dir]).await;
    assert_eq!(applied.status.code(), Some(0), "{}", printed(&applied));
    assert_inert_for_terminals("apply", &applied);
    assert!(printed(&applied).contains("pwned"), "{}", printed(&applied));
}

#[tokio::test(flavor = "multi_thread")]
async fn markdown_of_plan_and_review_cannot_mention_link_or_break_a_table() {
    let sim = hostile_simulator().await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    for args in [
        &["plan", dir, "-o", "markdown"][..],
        &["review", dir, "-o", "markdown"][..],
    ] {
        let output = run(&sim, args).await;
        let markdown = String::from_utf8_lossy(&output.stdout).to_string();
        assert!(markdown.contains("pwned"), "{args:?}: {markdown}");
        for forbidden in [
            "@everyone",
            "https://",
            "www.evil",
            "<b>",
            "\u{202E}",
            "\x1b",
            "\r",
        ] {
            assert!(
                !markdown.contains(forbidden),
                "{args:?}: {forbidden:?} in\n{markdown}"
            );
        }
        // Every row of every table has as many cells as its header.
        let mut columns = None;
        for line in markdown.lines() {
            if !line.starts_with('|') {
                columns = None;
                continue;
            }
            let pipes = line
                .match_indices('|')
                .filter(|(i, _)| !line[..*i].ends_with('\\'))
                .count();
            let expected = *columns.get_or_insert(pipes);
            assert_eq!(pipes, expected, "{args:?}: a broken row: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn review_csv_cells_cannot_run_as_formulas() {
    let sim = hostile_simulator().await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    let output = run(&sim, &["review", dir, "-o", "csv"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", printed(&output));
    // Printed to stdout, often into a CI log: one row per line, nothing a runner acts on.
    assert_inert_for_terminals("review -o csv", &output);
    let csv = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        csv.contains(",\"'=HYPERLINK(\"\"https://evil.example\"\",\"\"Engineering\"\")\","),
        "{csv}"
    );
    assert!(!csv.contains(",=HYPERLINK"), "{csv}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_keeps_a_hostile_name_exactly() {
    let sim = hostile_simulator().await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();

    let plan = run(&sim, &["plan", dir, "-o", "json"]).await;
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        plan["connectors"][0]["changes"][0]["policyName"],
        TERMINAL_AND_MARKDOWN
    );

    let review = run(&sim, &["review", dir, "-o", "json"]).await;
    let rows: Vec<serde_json::Value> = serde_json::from_slice(&review.stdout).unwrap();
    for name in [TERMINAL_AND_MARKDOWN, FORMULA] {
        assert!(rows.iter().any(|r| r["policyName"] == name), "{rows:?}");
    }

    let export = run(
        &sim,
        &[
            "export",
            "--endpoint",
            &sim.endpoint(),
            "--admin-email",
            "it-admin@acme.example",
            "-o",
            "json",
        ],
    )
    .await;
    assert_eq!(export.status.code(), Some(0), "{}", printed(&export));
    // The name is in no exported object (they select the policy by ID); the output parses.
    let _: serde_json::Value = serde_json::from_slice(&export.stdout).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn export_yaml_comments_stay_one_line_for_every_parser() {
    let sim = hostile_simulator().await;
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("exported.yaml");
    let export = run(
        &sim,
        &[
            "export",
            "--endpoint",
            &sim.endpoint(),
            "--admin-email",
            "it-admin@acme.example",
            "--connector-name",
            "acme",
            "-n",
            "finance",
            "--output-file",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(export.status.code(), Some(0), "{}", printed(&export));
    let yaml = std::fs::read_to_string(&file).unwrap();
    for c in ['\r', '\u{85}', '\u{2028}', '\u{2029}', '\x1b'] {
        assert!(!yaml.contains(c), "{c:?} in\n{yaml}");
    }
    let comments: Vec<&str> = yaml
        .lines()
        .filter(|l| l.starts_with('#') && l.contains("pwned"))
        .collect();
    assert_eq!(comments.len(), 1, "{yaml}");
    assert!(
        comments[0].starts_with("# ::warning::pwned\\u{1b}[2J\\rFinance\\n::add-mask::x"),
        "{yaml}"
    );
}

/// Expensify refuses the next request with a crafted message.
fn refuse_next_request(sim: &expensify_operator::simulator::SimulatorHandle) {
    let body = serde_json::json!({
        "responseCode": 410,
        "responseMessage": "Gone\r\n::add-mask::x\u{1b}[2J\u{202E} @everyone https://evil.example",
    });
    sim.state()
        .set_faults(expensify_operator::simulator::FaultConfig {
            script: std::collections::VecDeque::from(vec![
                expensify_operator::simulator::ScriptedFault::Respond {
                    status: 200,
                    body: body.to_string(),
                },
            ]),
            ..Default::default()
        });
}

/// A connector that cannot be read carries Expensify's message into its status, which
/// `plan` (text and Markdown) and `review` print.
#[tokio::test(flavor = "multi_thread")]
async fn expensify_messages_in_statuses_are_escaped() {
    let sim = hostile_simulator().await;
    let repo = repo_with_a_pending_grant(&sim, &sim.endpoint());
    let dir = repo.path().to_str().unwrap();
    for args in [
        &["plan", dir][..],
        &["plan", dir, "-o", "markdown"][..],
        &["review", dir, "-o", "csv"][..],
    ] {
        refuse_next_request(&sim);
        let output = run(&sim, args).await;
        assert_eq!(
            output.status.code(),
            Some(1),
            "{args:?}: {}",
            printed(&output)
        );
        assert!(
            printed(&output).contains("Gone"),
            "{args:?}: {}",
            printed(&output)
        );
        assert_inert_for_terminals(&format!("{args:?}"), &output);
        if args.contains(&"markdown") {
            let markdown = String::from_utf8_lossy(&output.stdout);
            assert!(
                !markdown.contains("@everyone") && !markdown.contains("https://"),
                "{markdown}"
            );
        }
    }
}

/// An error carrying Expensify's own text (here a request refused with a crafted message)
/// is printed by `main` line by line, escaped.
#[tokio::test(flavor = "multi_thread")]
async fn an_error_with_expensify_text_is_printed_escaped() {
    let sim = hostile_simulator().await;
    refuse_next_request(&sim);
    let export = run(
        &sim,
        &[
            "export",
            "--endpoint",
            &sim.endpoint(),
            "--admin-email",
            "it-admin@acme.example",
        ],
    )
    .await;
    assert_eq!(export.status.code(), Some(1), "{}", printed(&export));
    assert_inert_for_terminals("export error", &export);
    let stderr = String::from_utf8_lossy(&export.stderr);
    // Line breaks are kept (errors list their causes on lines of their own); a line
    // cannot start a workflow command.
    assert!(
        stderr.contains("Gone\\r\n\\::add-mask::x\\u{1b}[2J"),
        "{stderr}"
    );
}
