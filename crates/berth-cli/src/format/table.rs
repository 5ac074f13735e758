//! Go's `text/tabwriter` as docker configures it (minwidth 10, tabwidth 1, padding 3, spaces):
//! tab-terminated cells are aligned in columns; a column block spans consecutive lines that
//! have a cell in that column.

/// Docker's table settings.
pub const MIN_WIDTH: usize = 10;
pub const PADDING: usize = 3;

/// Aligns tab-separated text the way `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)` does.
pub fn align(text: &str) -> String {
    align_with(text, MIN_WIDTH, PADDING)
}

pub fn align_with(text: &str, min_width: usize, padding: usize) -> String {
    let ends_with_newline = text.ends_with('\n');
    let body = text.strip_suffix('\n').unwrap_or(text);
    let lines: Vec<Vec<&str>> = body.split('\n').map(|l| l.split('\t').collect()).collect();
    let mut out = String::new();
    let mut widths = Vec::new();
    format_block(
        &lines,
        0,
        lines.len(),
        &mut widths,
        min_width,
        padding,
        &mut out,
    );
    if !ends_with_newline {
        out.pop();
    }
    out
}

fn width(cell: &str) -> usize {
    cell.chars().count()
}

fn format_block(
    lines: &[Vec<&str>],
    mut line0: usize,
    line1: usize,
    widths: &mut Vec<usize>,
    min_width: usize,
    padding: usize,
    out: &mut String,
) {
    let column = widths.len();
    let mut this = line0;
    while this < line1 {
        if column + 1 >= lines[this].len() {
            this += 1;
            continue;
        }
        write_lines(lines, line0, this, widths, out);
        line0 = this;
        let mut w = min_width;
        while this < line1 && column + 1 < lines[this].len() {
            w = w.max(width(lines[this][column]) + padding);
            this += 1;
        }
        widths.push(w);
        format_block(lines, line0, this, widths, min_width, padding, out);
        widths.pop();
        line0 = this;
    }
    write_lines(lines, line0, line1, widths, out);
}

fn write_lines(lines: &[Vec<&str>], from: usize, to: usize, widths: &[usize], out: &mut String) {
    for line in &lines[from..to] {
        for (j, cell) in line.iter().enumerate() {
            out.push_str(cell);
            if j < widths.len() {
                out.push_str(&" ".repeat(widths[j].saturating_sub(width(cell))));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_like_docker_images() {
        let text = "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE\nbusybox\tlatest\t0123456789ab\t2 weeks ago\t4.26MB\n";
        assert_eq!(
            align(text),
            "REPOSITORY   TAG       IMAGE ID       CREATED       SIZE\n\
             busybox      latest    0123456789ab   2 weeks ago   4.26MB\n"
        );
    }

    #[test]
    fn min_width_and_short_lines() {
        assert_eq!(align("a\tb\n"), "a         b\n");
        // A line without the column ends the block.
        assert_eq!(
            align("a\tb\nlonger-than-ten\tc\nx\nq\tr\n"),
            "a                 b\nlonger-than-ten   c\nx\nq         r\n"
        );
    }
}
