//! An error and its causes on one line, for logs and for the tools' messages. A leaf:
//! every layer may use it without depending on the crate error.

/// An error with its chain of causes, on one line: `a: b: c`.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
