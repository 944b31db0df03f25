//! The config loader's property, shared by the proptest suite (`tests/fuzz_config.rs`) and the
//! libFuzzer target (`fuzz/fuzz_targets/config.rs`), which include this file by path.
//!
//! For any text: [`Config::from_toml_str`] returns (it does not panic); a valid config has a
//! scene and a [`Config::describe`] of two-space-indented lines; an invalid one has at least
//! one error, each at a line and column inside the text (a column may be one past the line's
//! last character), sorted by position, each with a message.

use pairlab_server::config::Config;

/// Checks the loader's property on one file's text; `Err` says what broke.
pub fn check_config_text(text: &str) -> Result<(), String> {
    match Config::from_toml_str(text) {
        Ok(config) => {
            if config.scenes.is_empty() {
                return Err(format!("a valid config without a scene: {text:?}"));
            }
            let description = config.describe();
            let well_formed = description
                .split_inclusive('\n')
                .all(|line| line.starts_with("  ") && line.ends_with('\n'));
            if description.is_empty() || !well_formed {
                return Err(format!("describe() gave {description:?} for {text:?}"));
            }
            Ok(())
        }
        Err(errors) => {
            let errors = errors.errors;
            if errors.is_empty() {
                return Err(format!("refused without an error: {text:?}"));
            }
            let lines: Vec<&str> = text.split('\n').collect();
            for e in &errors {
                let line_chars = e
                    .line
                    .checked_sub(1)
                    .and_then(|i| lines.get(i))
                    .map(|l| l.chars().count());
                let inside = line_chars.is_some_and(|n| (1..=n + 1).contains(&e.column));
                if !inside || e.message.is_empty() {
                    return Err(format!("{e:?} is not inside {text:?}"));
                }
            }
            if errors
                .windows(2)
                .any(|w| (w[0].line, w[0].column) > (w[1].line, w[1].column))
            {
                return Err(format!("errors out of order: {errors:?} for {text:?}"));
            }
            Ok(())
        }
    }
}
