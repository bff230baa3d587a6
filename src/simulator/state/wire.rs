//! What the simulator sends back: an answer, a dropped connection, a stall, or a hostile
//! answer; and Expensify's JSON envelope for answers.

use serde_json::{Map, Value, json};

/// An answer to send back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimResponse {
    pub status: u16,
    pub body: String,
}

/// What the server does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Respond(SimResponse),
    /// Close the connection without answering.
    Drop,
    /// Send this answer only after the delay.
    Stall(SimResponse, std::time::Duration),
    /// Answer in a way no real server should (hostile-server tests).
    Hostile(HostileAnswer),
}

/// The hostile answers, which the HTTP side builds (they are headers and streams, not a
/// status and a body).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostileAnswer {
    /// HTTP 429 with this `Retry-After` value.
    RetryAfter(String),
    /// HTTP 200 and a body without end.
    EndlessBody,
    /// HTTP 200 and one byte per interval, without end.
    SlowDrip(std::time::Duration),
}

impl HostileAnswer {
    pub fn status(&self) -> u16 {
        match self {
            HostileAnswer::RetryAfter(_) => 429,
            HostileAnswer::EndlessBody | HostileAnswer::SlowDrip(_) => 200,
        }
    }
}

pub(super) const RATE_LIMIT_MESSAGE: &str = "Too many requests. Please try again later";

pub(super) fn answer(code: u16, message: impl Into<String>) -> SimResponse {
    SimResponse {
        status: 200,
        body: json!({"responseMessage": message.into(), "responseCode": code}).to_string(),
    }
}

pub(super) fn success(mut body: Map<String, Value>) -> SimResponse {
    body.insert("responseCode".to_string(), json!(200));
    SimResponse {
        status: 200,
        body: Value::Object(body).to_string(),
    }
}
