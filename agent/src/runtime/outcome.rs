//! How a run ended, in the terms an operator reads: the classes Kubernetes
//! users know (`Completed`, `Error`, `OOMKilled`…) plus `Trap` for Wasm faults.

use serde::Serialize;
use wasmtime::Trap;
use wasmtime_wasi::I32Exit;

/// Why an instance stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ExitReason {
    /// Returned from its entry point or exited with code 0.
    Completed,
    /// Exited with a non-zero code.
    Error,
    /// Died of a WebAssembly trap (see [`Outcome::trap`]).
    Trap,
    /// Died after a memory growth was refused by its memory limit.
    #[serde(rename = "OOMKilled")]
    OomKilled,
    /// Ran past its wall-clock deadline and was stopped.
    DeadlineExceeded,
}

impl ExitReason {
    /// The name shown to users, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ExitReason::Completed => "Completed",
            ExitReason::Error => "Error",
            ExitReason::Trap => "Trap",
            ExitReason::OomKilled => "OOMKilled",
            ExitReason::DeadlineExceeded => "DeadlineExceeded",
        }
    }
}

impl std::fmt::Display for ExitReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result of one run, with what it cost.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    /// Why it stopped.
    pub reason: ExitReason,
    /// The guest's exit code, when it exited with one.
    pub exit_code: Option<i32>,
    /// The trap kind (`unreachable`, `stack-overflow`…) for `Trap`, and for
    /// `OOMKilled` when the guest died by trapping.
    pub trap: Option<String>,
    /// A human-readable explanation of the end, with the guest's backtrace for traps.
    pub message: Option<String>,
    /// Wall-clock seconds from the start of instantiation to the end.
    pub wall_seconds: f64,
    /// CPU seconds the instance consumed.
    pub cpu_seconds: f64,
    /// Largest total of linear memories and tables, in bytes.
    pub peak_memory_bytes: u64,
}

/// The classification of an ended run, before costs are attached.
pub(crate) struct Ending {
    pub reason: ExitReason,
    pub exit_code: Option<i32>,
    pub trap: Option<String>,
    pub message: Option<String>,
}

impl Ending {
    /// Classifies the result of a guest's entry point. `refusal` says what
    /// refused a memory or table growth during the run, if anything did.
    pub(crate) fn classify(result: wasmtime::Result<()>, refusal: Option<&str>) -> Self {
        let ending = match result {
            Ok(()) => Self::exited(0),
            Err(error) => {
                if let Some(exit) = error.downcast_ref::<I32Exit>() {
                    Self::exited(exit.0)
                } else if let Some(trap) = error.downcast_ref::<Trap>() {
                    Self {
                        reason: ExitReason::Trap,
                        exit_code: None,
                        trap: Some(trap_kind(*trap)),
                        message: Some(trap_message(*trap, &error)),
                    }
                } else if let Some(pool) =
                    error.downcast_ref::<wasmtime::PoolConcurrencyLimitError>()
                {
                    // Not the guest's doing: the node is full.
                    Self {
                        reason: ExitReason::Error,
                        exit_code: None,
                        trap: None,
                        message: Some(format!(
                            "no free instance slot on this node ({pool}): it already runs as many instances as it can hold (the agent's --max-instances); the scheduler places no more than the node advertises, so this instance waits for a slot"
                        )),
                    }
                } else {
                    // A failure raised by the host on the guest's behalf.
                    Self {
                        reason: ExitReason::Trap,
                        exit_code: None,
                        trap: Some("host".to_string()),
                        message: Some(format!("{error:#}")),
                    }
                }
            }
        };
        // A guest that dies after a refused growth died of it; a node out of
        // instance slots (an Error without exit code) is not the guest's doing.
        let died = match ending.reason {
            ExitReason::Trap => true,
            ExitReason::Error => ending.exit_code.is_some(),
            _ => false,
        };
        if let Some(refusal) = refusal.filter(|_| died) {
            let message = format!(
                "out of memory: {refusal}; then the guest {}",
                match ending.exit_code {
                    Some(code) => format!("exited with code {code}"),
                    None => format!("trapped ({})", ending.trap.as_deref().unwrap_or("?")),
                }
            );
            return Self {
                reason: ExitReason::OomKilled,
                message: Some(message),
                ..ending
            };
        }
        ending
    }

    /// The guest exited with `code`.
    pub(crate) fn exited(code: i32) -> Self {
        Self {
            reason: if code == 0 {
                ExitReason::Completed
            } else {
                ExitReason::Error
            },
            exit_code: Some(code),
            trap: None,
            message: None,
        }
    }

    /// Instantiation failed for want of memory.
    pub(crate) fn oom_at_start(error: &wasmtime::Error) -> Self {
        Self {
            reason: ExitReason::OomKilled,
            exit_code: None,
            trap: None,
            message: Some(format!(
                "the module's initial memory does not fit its memory limit: {error:#}"
            )),
        }
    }

    /// The deadline passed.
    pub(crate) fn deadline(after: std::time::Duration) -> Self {
        Self {
            reason: ExitReason::DeadlineExceeded,
            exit_code: None,
            trap: None,
            message: Some(format!("stopped after its {after:?} deadline")),
        }
    }
}

/// Backtrace lines kept in a trap's message (a stack overflow has thousands).
const BACKTRACE_LINES: usize = 12;

/// The trap's description and the top of the guest's backtrace.
fn trap_message(trap: Trap, error: &wasmtime::Error) -> String {
    let mut message = trap.to_string();
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let text = backtrace.to_string();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        for line in lines.iter().take(BACKTRACE_LINES) {
            message.push('\n');
            message.push_str(line);
        }
        if lines.len() > BACKTRACE_LINES {
            message.push_str(&format!(
                "\n    … {} more frames",
                lines.len() - BACKTRACE_LINES
            ));
        }
    }
    message
}

/// A stable, kebab-case name for a trap.
fn trap_kind(trap: Trap) -> String {
    match trap {
        Trap::UnreachableCodeReached => "unreachable".into(),
        Trap::IntegerDivisionByZero => "integer-divide-by-zero".into(),
        Trap::IntegerOverflow => "integer-overflow".into(),
        Trap::BadConversionToInteger => "bad-conversion-to-integer".into(),
        Trap::MemoryOutOfBounds => "memory-out-of-bounds".into(),
        Trap::TableOutOfBounds => "table-out-of-bounds".into(),
        Trap::StackOverflow => "stack-overflow".into(),
        Trap::IndirectCallToNull => "indirect-call-to-null".into(),
        Trap::BadSignature => "bad-signature".into(),
        Trap::HeapMisaligned => "heap-misaligned".into(),
        Trap::Interrupt => "interrupt".into(),
        other => kebab(&format!("{other:?}")),
    }
}

fn kebab(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('-');
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}
