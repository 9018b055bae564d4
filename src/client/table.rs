//! Column-aligned text for people: a header row, then one row per item.

/// A table being filled row by row; `print` aligns the columns.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The rows, columns padded to their widest cell, two spaces apart, no trailing blanks.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                let width = |row: &Vec<String>| row.get(c).map_or(0, |s| s.chars().count());
                self.rows.iter().map(width).max().unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(&format!("{cell:<width$}  "));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut table = Table::new(&["ID", "ADDRESS"]);
        table.row(vec!["instance-1".into(), "10.0.0.5".into()]);
        table.row(vec!["i".into(), "-".into()]);
        assert_eq!(
            table.render(),
            "ID          ADDRESS\ninstance-1  10.0.0.5\ni           -\n"
        );
    }
}
