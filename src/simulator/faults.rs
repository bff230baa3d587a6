//! Fault injection: what the simulator does to a request instead of (or besides)
//! answering it properly.

use std::collections::VecDeque;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Faults to inject, settable in the seed or at run time through `PUT /admin/faults`.
/// The `script` is consumed first, one entry per request; then the probabilities apply.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultConfig {
    /// Added to every answer.
    #[serde(default)]
    pub latency_ms: u64,
    /// A slow, jittery path to the server: each request is taken in (and counted by the
    /// rate windows) between 0 and this many milliseconds after it arrived, drawn at random
    /// per request (seeded).
    #[serde(default)]
    pub accept_delay_ms: u64,
    /// HTTP 429 with Expensify's rate-limit body.
    #[serde(default)]
    pub rate_limit_probability: f64,
    /// HTTP 200 with body `responseCode` 503 (throttling as seen in 2021).
    #[serde(default)]
    pub body503_probability: f64,
    /// HTTP 500 with a plain-text body.
    #[serde(default)]
    pub http500_probability: f64,
    /// The connection is closed without an answer.
    #[serde(default)]
    pub drop_probability: f64,
    /// Seed of the random draws, so a fault pattern can be replayed.
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub script: VecDeque<ScriptedFault>,
}

/// One scripted answer.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum ScriptedFault {
    /// Handle this request normally.
    Pass,
    Http429,
    Body503,
    Http500,
    Drop,
    /// Apply the job, then close the connection without answering: the write happened
    /// but the client cannot know.
    DropAfterApply,
    /// Apply the job, then hold its answer for `ms` milliseconds: a client stopped in that
    /// window (SIGTERM, a cancelled task) wrote without learning the result.
    #[serde(rename_all = "camelCase")]
    ApplyThenStall {
        ms: u64,
    },
    /// Answer with exactly this status and body.
    Respond {
        status: u16,
        body: String,
    },
    /// Hostile: HTTP 429 with this `Retry-After` header value, verbatim (e.g.
    /// `18446744073709551615`).
    RetryAfter {
        value: String,
    },
    /// Hostile: HTTP 200 whose body never ends.
    EndlessBody,
    /// Hostile: HTTP 200 whose body arrives one byte every `intervalMs`, without end.
    SlowDrip {
        #[serde(rename = "intervalMs")]
        interval_ms: u64,
    },
}

impl FaultConfig {
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (name, p) in [
            ("rateLimitProbability", self.rate_limit_probability),
            ("body503Probability", self.body503_probability),
            ("http500Probability", self.http500_probability),
            ("dropProbability", self.drop_probability),
        ] {
            if !(0.0..=1.0).contains(&p) {
                problems.push(format!("{name} {p} is not between 0 and 1"));
            }
        }
        for (i, fault) in self.script.iter().enumerate() {
            match fault {
                ScriptedFault::Respond { status, .. } if !(100..=599).contains(status) => {
                    problems.push(format!("script[{i}].status {status} is not an HTTP status"));
                }
                ScriptedFault::RetryAfter { value }
                    if !value.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
                {
                    problems.push(format!(
                        "script[{i}].value {value:?} is not a header value (visible ASCII only)"
                    ));
                }
                ScriptedFault::SlowDrip { interval_ms: 0 } => {
                    problems.push(format!("script[{i}].intervalMs must be at least 1"));
                }
                _ => {}
            }
        }
        problems
    }
}

/// The live fault state: the configuration and its random source.
#[derive(Debug)]
pub struct Faults {
    config: FaultConfig,
    rng: SmallRng,
}

impl Faults {
    pub fn new(config: FaultConfig) -> Self {
        let rng = SmallRng::seed_from_u64(config.seed);
        Self { config, rng }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    pub fn latency(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.latency_ms)
    }

    /// How late the next request is taken in (see [`FaultConfig::accept_delay_ms`]).
    pub fn accept_delay(&mut self) -> std::time::Duration {
        let most = self.config.accept_delay_ms;
        let ms = if most == 0 {
            0
        } else {
            self.rng.random_range(0..=most)
        };
        std::time::Duration::from_millis(ms)
    }

    /// The fault for the next request, if any.
    pub fn draw(&mut self) -> Option<ScriptedFault> {
        if let Some(next) = self.config.script.pop_front() {
            return (next != ScriptedFault::Pass).then_some(next);
        }
        let draws = [
            (self.config.drop_probability, ScriptedFault::Drop),
            (self.config.rate_limit_probability, ScriptedFault::Http429),
            (self.config.body503_probability, ScriptedFault::Body503),
            (self.config.http500_probability, ScriptedFault::Http500),
        ];
        for (probability, fault) in draws {
            if probability > 0.0 && self.rng.random_bool(probability.min(1.0)) {
                return Some(fault);
            }
        }
        None
    }
}

impl ScriptedFault {
    /// A short label for the request log and counters.
    pub fn label(&self) -> &'static str {
        match self {
            ScriptedFault::Pass => "pass",
            ScriptedFault::Http429 => "http429",
            ScriptedFault::Body503 => "body503",
            ScriptedFault::Http500 => "http500",
            ScriptedFault::Drop => "drop",
            ScriptedFault::DropAfterApply => "dropAfterApply",
            ScriptedFault::ApplyThenStall { .. } => "applyThenStall",
            ScriptedFault::Respond { .. } => "respond",
            ScriptedFault::RetryAfter { .. } => "retryAfter",
            ScriptedFault::EndlessBody => "endlessBody",
            ScriptedFault::SlowDrip { .. } => "slowDrip",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn script_comes_first_then_probabilities() {
        let mut faults = Faults::new(FaultConfig {
            script: VecDeque::from([
                ScriptedFault::Http429,
                ScriptedFault::Pass,
                ScriptedFault::Drop,
            ]),
            ..FaultConfig::default()
        });
        assert_eq!(faults.draw(), Some(ScriptedFault::Http429));
        assert_eq!(faults.draw(), None);
        assert_eq!(faults.draw(), Some(ScriptedFault::Drop));
        assert_eq!(faults.draw(), None);
    }

    #[test]
    fn accept_delays_are_seeded_and_bounded() {
        let config = FaultConfig {
            accept_delay_ms: 300,
            seed: 9,
            ..FaultConfig::default()
        };
        let draw = |config: &FaultConfig| {
            let mut faults = Faults::new(config.clone());
            (0..200).map(|_| faults.accept_delay()).collect::<Vec<_>>()
        };
        let delays = draw(&config);
        assert_eq!(delays, draw(&config), "same seed, same delays");
        assert!(delays.iter().all(|d| d.as_millis() <= 300));
        assert!(
            delays.iter().any(|d| d.as_millis() < 100)
                && delays.iter().any(|d| d.as_millis() > 200)
        );
        assert!(
            draw(&FaultConfig::default())
                .iter()
                .all(std::time::Duration::is_zero)
        );
        let read: FaultConfig = serde_saphyr::from_str("acceptDelayMs: 250\n").unwrap();
        assert_eq!(read.accept_delay_ms, 250);
    }

    #[test]
    fn probabilities_are_seeded_and_roughly_honoured() {
        let config = FaultConfig {
            body503_probability: 0.25,
            seed: 42,
            ..FaultConfig::default()
        };
        let run = |config: &FaultConfig| {
            let mut faults = Faults::new(config.clone());
            (0..1000)
                .map(|_| faults.draw().is_some())
                .collect::<Vec<_>>()
        };
        let first = run(&config);
        assert_eq!(first, run(&config), "same seed, same pattern");
        let hits = first.iter().filter(|hit| **hit).count();
        assert!((180..320).contains(&hits), "{hits} hits for p=0.25");
    }

    #[test]
    fn rejects_out_of_range_values() {
        let config = FaultConfig {
            drop_probability: 1.5,
            script: VecDeque::from([ScriptedFault::Respond {
                status: 42,
                body: String::new(),
            }]),
            ..FaultConfig::default()
        };
        assert_eq!(config.problems().len(), 2);
        let hostile = FaultConfig {
            script: VecDeque::from([
                ScriptedFault::RetryAfter {
                    value: "1\n2".into(),
                },
                ScriptedFault::SlowDrip { interval_ms: 0 },
                ScriptedFault::EndlessBody,
            ]),
            ..FaultConfig::default()
        };
        assert_eq!(hostile.problems().len(), 2);
    }

    #[test]
    fn hostile_faults_read_from_yaml() {
        let config: FaultConfig = serde_saphyr::from_str(
            "script:\n- {kind: retryAfter, value: '18446744073709551615'}\n- {kind: endlessBody}\n- {kind: slowDrip, intervalMs: 50}\n",
        )
        .unwrap();
        assert_eq!(
            config.script,
            VecDeque::from([
                ScriptedFault::RetryAfter {
                    value: "18446744073709551615".into()
                },
                ScriptedFault::EndlessBody,
                ScriptedFault::SlowDrip { interval_ms: 50 },
            ])
        );
    }
}
