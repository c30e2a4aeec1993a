//! The team's program of a command backfill, as one worker runs it: started
//! once and kept running, fed batch after batch on stdin (one JSON object per
//! row, then `{"end_of_batch": true}`), its answers read from stdout the same
//! way, each batch under a time limit; its stderr goes to orch's log,
//! prefixed with the worker. docs/backfill.md states the protocol.

use std::collections::{HashMap, VecDeque};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::store::command::{Answer, ReadRow};

/// Lines of the program's stderr kept for the message when it fails.
const STDERR_TAIL: usize = 20;

/// Why a batch got no answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgramError {
    /// No `{"end_of_batch": true}` within the time limit; the program was
    /// stopped.
    Timeout(Duration),
    /// It could not start, exited, or answered what the protocol does not
    /// allow; it was stopped.
    Failed(String),
}

/// What the program is told a batch's rows are.
pub struct Columns<'a> {
    pub reads: &'a [String],
    pub writes: &'a [String],
}

/// One worker's program, started when its first batch comes.
pub struct Program {
    argv: Vec<String>,
    /// `worker 0`, before each line of its stderr in the log.
    label: String,
    timeout: Duration,
    running: Option<Running>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

struct Running {
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl Program {
    pub fn new(argv: Vec<String>, worker: i32, timeout: Duration) -> Program {
        Program {
            argv,
            label: format!("backfill program (worker {worker})"),
            timeout,
            running: None,
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// The program's argv, for messages.
    pub fn command_line(&self) -> String {
        self.argv.join(" ")
    }

    /// The last lines it wrote to stderr (empty when none).
    pub fn stderr_tail(&self) -> String {
        let tail = self.stderr_tail.lock().unwrap_or_else(|e| e.into_inner());
        tail.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// The program's answer for each row of `rows`, in order; a row it left
    /// out is `Answer::LeftOut`.
    pub async fn answer(
        &mut self,
        rows: &[ReadRow],
        columns: &Columns<'_>,
    ) -> Result<Vec<Answer>, ProgramError> {
        if self.running.is_none() {
            self.running = Some(self.start()?);
        }
        let input = input(rows, columns.reads);
        let limit = self.timeout;
        let running = self
            .running
            .as_mut()
            .ok_or_else(|| ProgramError::Failed("the program is not running".to_string()))?;
        let exchange = exchange(running, &input, rows, columns.writes);
        let result = match tokio::time::timeout(limit, exchange).await {
            Ok(Ok(answers)) => return Ok(answers),
            Ok(Err(why)) => Err(ProgramError::Failed(why)),
            Err(_) => Err(ProgramError::Timeout(limit)),
        };
        let status = self.stop().await;
        result.map_err(|e| match e {
            ProgramError::Failed(why) => ProgramError::Failed(match status {
                Some(status) => format!("{why} ({status})"),
                None => why,
            }),
            timeout => timeout,
        })
    }

    /// Stop the program (it is started again for the next batch); says how
    /// it exited when it had.
    pub async fn stop(&mut self) -> Option<String> {
        let mut running = self.running.take()?;
        drop(running.stdin);
        let exited = match running.child.try_wait() {
            Ok(Some(status)) => Some(status),
            _ => {
                // It may be exiting after a crash: a moment to say how.
                match tokio::time::timeout(Duration::from_millis(200), running.child.wait()).await {
                    Ok(Ok(status)) => Some(status),
                    _ => None,
                }
            }
        };
        if exited.is_none() {
            let _ = running.child.start_kill();
            let _ = running.child.wait().await;
        }
        exited.map(|status| format!("it {}", describe_exit(status)))
    }

    fn start(&mut self) -> Result<Running, ProgramError> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err(ProgramError::Failed("the command is empty".to_string()));
        };
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                ProgramError::Failed(format!(
                    "cannot start {} (run from {}): {e}",
                    self.command_line(),
                    std::env::current_dir()
                        .map(|d| d.display().to_string())
                        .unwrap_or_else(|_| "the current directory".to_string())
                ))
            })?;
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(ProgramError::Failed(
                "the program's pipes could not be opened".to_string(),
            ));
        };
        tracing::debug!("{}: started {}", self.label, self.command_line());
        let label = self.label.clone();
        let tail = Arc::clone(&self.stderr_tail);
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::warn!("{label}: {line}");
                let mut tail = tail.lock().unwrap_or_else(|e| e.into_inner());
                if tail.len() == STDERR_TAIL {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        });
        Ok(Running {
            child,
            stdin,
            stdout: BufReader::new(stdout).lines(),
        })
    }
}

/// When the worker is done with its program: its stdin closes, and it has
/// a moment to exit on its own (flushing what it keeps) before it is killed.
impl Drop for Program {
    fn drop(&mut self) {
        let Some(running) = self.running.take() else {
            return;
        };
        let Running {
            mut child, stdin, ..
        } = running;
        drop(stdin);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if tokio::time::timeout(EXIT_GRACE, child.wait())
                    .await
                    .is_err()
                {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            });
        }
        // Without a runtime the child is killed as it is dropped.
    }
}

/// How long a program has to exit once its input is closed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// A batch's input: a line per row, then the end of the batch.
fn input(rows: &[ReadRow], reads: &[String]) -> Vec<u8> {
    let mut text = String::new();
    for row in rows {
        let values: Map<String, Value> = reads
            .iter()
            .zip(&row.values)
            .map(|(name, value)| (name.clone(), json!(value)))
            .collect();
        text.push_str(&json!({"key": row.key, "row": values}).to_string());
        text.push('\n');
    }
    text.push_str("{\"end_of_batch\":true}\n");
    text.into_bytes()
}

/// Send the batch and read the answers at once (a program may answer
/// while it still reads, and a full pipe must not stop either side).
async fn exchange(
    running: &mut Running,
    input: &[u8],
    rows: &[ReadRow],
    writes: &[String],
) -> Result<Vec<Answer>, String> {
    let Running { stdin, stdout, .. } = running;
    let send = async {
        stdin.write_all(input).await?;
        stdin.flush().await
    };
    let receive = async {
        let mut answers = Answers::new(rows, writes);
        loop {
            match stdout.next_line().await {
                Ok(Some(line)) => {
                    if answers.take(&line)? {
                        return Ok(answers.done());
                    }
                }
                Ok(None) => {
                    return Err(
                        "it closed its stdout before answering {\"end_of_batch\": true}"
                            .to_string(),
                    );
                }
                Err(e) => return Err(format!("cannot read its stdout: {e}")),
            }
        }
    };
    let (sent, received) = tokio::join!(send, receive);
    let answers = received?;
    sent.map_err(|e| format!("cannot write to its stdin: {e}"))?;
    Ok(answers)
}

/// The answers of one batch as they come.
struct Answers<'a> {
    index: HashMap<&'a [String], usize>,
    writes: &'a [String],
    answers: Vec<Answer>,
    line: usize,
}

impl<'a> Answers<'a> {
    fn new(rows: &'a [ReadRow], writes: &'a [String]) -> Self {
        Answers {
            index: rows
                .iter()
                .enumerate()
                .map(|(i, r)| (r.key.as_slice(), i))
                .collect(),
            writes,
            answers: vec![Answer::LeftOut; rows.len()],
            line: 0,
        }
    }

    fn done(self) -> Vec<Answer> {
        self.answers
    }

    /// Take one line of stdout; true at the end of the batch.
    fn take(&mut self, line: &str) -> Result<bool, String> {
        self.line += 1;
        if line.trim().is_empty() {
            return Ok(false);
        }
        let at = self.line;
        let value: Value = serde_json::from_str(line).map_err(|e| {
            format!(
                "line {at} of its answer is not JSON ({e}): {}",
                shorten(line)
            )
        })?;
        let Value::Object(object) = value else {
            return Err(format!(
                "line {at} of its answer is not a JSON object: {}",
                shorten(line)
            ));
        };
        if object.get("end_of_batch") == Some(&Value::Bool(true)) {
            return Ok(true);
        }
        let key = match object.get("key") {
            Some(Value::Array(items)) => items.iter().map(text).collect::<Option<Vec<String>>>(),
            _ => None,
        }
        .ok_or_else(|| {
            format!(
                "line {at} of its answer has no \"key\" array of the row's key values: {}",
                shorten(line)
            )
        })?;
        let Some(&row) = self.index.get(key.as_slice()) else {
            return Err(format!(
                "line {at} of its answer is for key {key:?}, which is not in the batch"
            ));
        };
        self.answers[row] = match (object.get("set"), object.get("error")) {
            (Some(Value::Object(set)), None) => self.values(set),
            (None, Some(error)) => Answer::Rejected(match error {
                Value::String(why) => why.clone(),
                other => other.to_string(),
            }),
            _ => {
                return Err(format!(
                    "line {at} of its answer has neither a \"set\" object nor an \"error\": {}",
                    shorten(line)
                ));
            }
        };
        Ok(false)
    }

    /// The `writes` columns' values from a `set` object; a row whose `set`
    /// misses one or names another column is rejected, saying so.
    fn values(&self, set: &Map<String, Value>) -> Answer {
        if let Some(other) = set.keys().find(|c| !self.writes.contains(c)) {
            return Answer::Rejected(format!(
                "the program set column {other:?}, which is not in writes ({})",
                self.writes.join(", ")
            ));
        }
        let mut values = Vec::with_capacity(self.writes.len());
        for column in self.writes {
            match set.get(column) {
                None => {
                    return Answer::Rejected(format!(
                        "the program's answer sets no value for {column:?}"
                    ));
                }
                Some(Value::Null) => values.push(None),
                Some(value) => values.push(text(value)),
            }
        }
        Answer::Set(values)
    }
}

/// A JSON scalar as PostgreSQL text input: strings as they are, numbers
/// and booleans as written.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn shorten(line: &str) -> String {
    let mut short: String = line.chars().take(200).collect();
    if short.len() < line.len() {
        short.push_str("...");
    }
    short
}

fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows() -> Vec<ReadRow> {
        vec![
            ReadRow {
                key: vec!["1".into()],
                values: vec![Some("12.5".into()), None],
            },
            ReadRow {
                key: vec!["2".into()],
                values: vec![Some("95".into()), Some("1".into())],
            },
        ]
    }

    #[test]
    fn input_is_a_line_per_row_then_the_end() {
        let reads = ["lat".to_string(), "lng".to_string()];
        let text = String::from_utf8(input(&rows(), &reads)).unwrap();
        assert_eq!(
            text,
            "{\"key\":[\"1\"],\"row\":{\"lat\":\"12.5\",\"lng\":null}}\n{\"key\":[\"2\"],\"row\":{\"lat\":\"95\",\"lng\":\"1\"}}\n{\"end_of_batch\":true}\n"
        );
    }

    #[test]
    fn answers_set_reject_or_leave_rows_out() {
        let rows = rows();
        let writes = ["loc".to_string()];
        type Case<'a> = (&'a [&'a str], Result<Vec<Answer>, &'a str>);
        let cases: &[Case] = &[
            (
                &[
                    r#"{"key": ["1"], "set": {"loc": "(1,2)"}}"#,
                    r#"{"key": ["2"], "error": "latitude 95 is out of range"}"#,
                    r#"{"end_of_batch": true}"#,
                ],
                Ok(vec![
                    Answer::Set(vec![Some("(1,2)".into())]),
                    Answer::Rejected("latitude 95 is out of range".into()),
                ]),
            ),
            (
                &[
                    r#"{"key": [1], "set": {"loc": null}}"#,
                    r#"{"end_of_batch": true}"#,
                ],
                Ok(vec![Answer::Set(vec![None]), Answer::LeftOut]),
            ),
            (
                &[
                    r#"{"key": ["1"], "set": {"other": "x"}}"#,
                    r#"{"end_of_batch": true}"#,
                ],
                Ok(vec![
                    Answer::Rejected(
                        "the program set column \"other\", which is not in writes (loc)".into(),
                    ),
                    Answer::LeftOut,
                ]),
            ),
            (
                &[r#"{"key": ["3"], "set": {"loc": "x"}}"#],
                Err("which is not in the batch"),
            ),
            (&["hello"], Err("line 1 of its answer is not JSON")),
            (
                &[r#"{"key": ["1"]}"#],
                Err("neither a \"set\" object nor an \"error\""),
            ),
        ];
        for (lines, expected) in cases {
            let mut answers = Answers::new(&rows, &writes);
            let mut result = Ok(false);
            for line in *lines {
                result = answers.take(line);
                if !matches!(result, Ok(false)) {
                    break;
                }
            }
            match (result, expected) {
                (Ok(true), Ok(expected)) => assert_eq!(&answers.done(), expected, "{lines:?}"),
                (Err(why), Err(expected)) => assert!(why.contains(expected), "{why}"),
                (other, _) => panic!("{lines:?}: {other:?}"),
            }
        }
    }
}
