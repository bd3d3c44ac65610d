//! A tolerant CSV reader shared by `lake resolve` and `lake ingest`: `,` or `, ` between
//! fields, quoted fields with embedded commas, doubled quotes and line breaks; an empty
//! unquoted field reads as null.

use std::io::BufRead;

use anyhow::{Result, bail};

/// The input ended inside a quoted field (a truncated file, or one still being written).
#[derive(Debug)]
pub struct UnclosedQuote;

impl std::fmt::Display for UnclosedQuote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a quoted field is not closed before the end of the file")
    }
}

impl std::error::Error for UnclosedQuote {}

/// One parsed CSV record: its fields' text, concatenated, with their bounds.
#[derive(Default)]
pub struct CsvRecord {
    text: String,
    /// (start, end, quoted) of each field in `text`.
    bounds: Vec<(usize, usize, bool)>,
    line: String,
}

impl CsvRecord {
    /// Reads the next record (one or more lines); false at the end of the input.
    pub fn read(&mut self, reader: &mut impl BufRead, line_no: &mut u64) -> Result<bool> {
        self.text.clear();
        self.bounds.clear();
        self.line.clear();
        if reader.read_line(&mut self.line)? == 0 {
            return Ok(false);
        }
        *line_no += 1;
        let mut chars: Vec<char> = self.line.trim_end_matches(['\n', '\r']).chars().collect();
        let mut i = 0;
        loop {
            // Start of a field: skip blanks after the separator.
            while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                i += 1;
            }
            let start = self.text.len();
            if i < chars.len() && chars[i] == '"' {
                i += 1;
                loop {
                    if i >= chars.len() {
                        // The quoted field goes on in the next line.
                        self.line.clear();
                        if reader.read_line(&mut self.line)? == 0 {
                            return Err(UnclosedQuote.into());
                        }
                        *line_no += 1;
                        self.text.push('\n');
                        chars = self.line.trim_end_matches(['\n', '\r']).chars().collect();
                        i = 0;
                        continue;
                    }
                    if chars[i] == '"' {
                        if i + 1 < chars.len() && chars[i + 1] == '"' {
                            self.text.push('"');
                            i += 2;
                            continue;
                        }
                        i += 1;
                        break;
                    }
                    self.text.push(chars[i]);
                    i += 1;
                }
                self.bounds.push((start, self.text.len(), true));
                while i < chars.len() && (chars[i] == ' ' || chars[i] == '\t') {
                    i += 1;
                }
                if i < chars.len() && chars[i] != ',' {
                    bail!("unexpected `{}` after a quoted field (field {})", chars[i], self.bounds.len());
                }
            } else {
                while i < chars.len() && chars[i] != ',' {
                    self.text.push(chars[i]);
                    i += 1;
                }
                let trimmed = self.text[start..].trim_end().len();
                self.text.truncate(start + trimmed);
                self.bounds.push((start, self.text.len(), false));
            }
            if i >= chars.len() {
                return Ok(true);
            }
            i += 1; // the comma
        }
    }

    pub fn len(&self) -> usize {
        self.bounds.len()
    }

    pub fn is_blank(&self) -> bool {
        self.bounds.len() == 1 && self.bounds[0].0 == self.bounds[0].1 && !self.bounds[0].2
    }

    /// Field `i`; an empty unquoted field is null.
    pub fn field(&self, i: usize) -> Option<&str> {
        let (start, end, quoted) = self.bounds[i];
        if start == end && !quoted { None } else { Some(&self.text[start..end]) }
    }

    pub fn fields(&self) -> impl Iterator<Item = Option<&str>> {
        (0..self.bounds.len()).map(|i| self.field(i))
    }
}

