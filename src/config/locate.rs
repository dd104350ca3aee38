//! Maps field paths (`clusters[1].endpoints[0].port`) to the line they sit on in the
//! YAML source, so that errors found after deserialisation still point at a line.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

enum Frame {
    Map {
        key: Option<String>,
        expect_key: bool,
    },
    Seq {
        index: usize,
    },
}

struct Walker {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Walker {
    fn path(&self) -> String {
        let mut p = String::new();
        for f in &self.stack {
            match f {
                Frame::Map { key: Some(k), .. } => {
                    if !p.is_empty() {
                        p.push('.');
                    }
                    p.push_str(k);
                }
                Frame::Map { key: None, .. } => {}
                Frame::Seq { index } => {
                    p.push('[');
                    p.push_str(&index.to_string());
                    p.push(']');
                }
            }
        }
        p
    }

    /// Records the line of a value node (scalar or collection start) at the current path.
    fn value_at(&mut self, line: usize) {
        let path = self.path();
        self.lines.entry(path).or_insert(line);
    }

    /// Called after a complete value: a map expects a key next, a sequence moves on.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Map { expect_key, key }) => {
                *expect_key = true;
                *key = None;
            }
            Some(Frame::Seq { index }) => *index += 1,
            None => {}
        }
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { expect_key, key }) = self.stack.last_mut() {
                    if *expect_key {
                        *expect_key = false;
                        *key = Some(value);
                        let path = self.path();
                        self.lines.entry(path).or_insert(line);
                        return;
                    }
                }
                self.value_at(line);
                self.value_done();
            }
            Event::Alias(_) => {
                self.value_at(line);
                self.value_done();
            }
            Event::MappingStart(..) => {
                self.value_at(line);
                self.stack.push(Frame::Map {
                    key: None,
                    expect_key: true,
                });
            }
            Event::SequenceStart(..) => {
                self.value_at(line);
                self.stack.push(Frame::Seq { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

/// Line numbers (1-based) of every field path in `text`; empty if the text is not YAML.
pub(crate) fn line_map(text: &str) -> HashMap<String, usize> {
    let mut walker = Walker {
        stack: Vec::new(),
        lines: HashMap::new(),
    };
    let mut parser = Parser::new_from_str(text);
    let _ = parser.load(&mut walker, false);
    walker.lines
}

/// The line of `path`, or of its nearest ancestor that has one.
pub(crate) fn line_of(map: &HashMap<String, usize>, path: &str) -> Option<usize> {
    let mut p = path;
    loop {
        if let Some(l) = map.get(p) {
            return Some(*l);
        }
        let cut = p.rfind(['.', '['])?;
        p = &p[..cut];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_lines() {
        let text = "a: 1\nlist:\n  - name: x\n    port: 80\n  - name: y\n    port: 81\n";
        let m = line_map(text);
        assert_eq!(line_of(&m, "a"), Some(1));
        assert_eq!(line_of(&m, "list[0].port"), Some(4));
        assert_eq!(line_of(&m, "list[1].name"), Some(5));
        assert_eq!(line_of(&m, "list[1].missing"), Some(5));
    }
}
