//! One-line rendering of an error and its causes, for logs and tool output.

/// An error with its chain of causes, one line: `outer: cause: root cause`.
pub fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
