//! Lists as text: tables, JSON, times.

use std::time::Duration;

use serde::Serialize;

/// Columns padded to their widest cell, two spaces apart; the last one is
/// not padded, and no line ends in spaces.
pub fn render_table(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    if let Some(last) = widths.last_mut() {
        *last = 0;
    }
    render(headers, &rows, &widths, 2, true)
}

/// Columns of fixed widths (a longer cell pushes the rest of its line
/// along), one space apart; a width of 0 leaves that column unpadded. The
/// layout the token, agent and invite lists have always had.
pub fn render_fixed_table(headers: &[&str], widths: &[usize], rows: Vec<Vec<String>>) -> String {
    render(headers, &rows, widths, 1, false)
}

fn render(
    headers: &[&str],
    rows: &[Vec<String>],
    widths: &[usize],
    gap: usize,
    trim: bool,
) -> String {
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (i, cell) in cells.enumerate() {
            if i > 0 {
                out.extend(std::iter::repeat_n(' ', gap));
            }
            out.push_str(cell);
            let width = widths.get(i).copied().unwrap_or(0);
            out.extend(std::iter::repeat_n(
                ' ',
                width.saturating_sub(cell.chars().count()),
            ));
        }
        if trim {
            out.truncate(out.trim_end().len());
        }
        out.push('\n');
        out
    };
    let mut out = line(&mut headers.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// A list as pretty JSON, or as the table `table` makes.
pub fn json_or_table(
    json: bool,
    list: &impl Serialize,
    table: impl FnOnce() -> String,
) -> anyhow::Result<String> {
    Ok(if json {
        format!("{}\n", serde_json::to_string_pretty(list)?)
    } else {
        table()
    })
}

/// Unix milliseconds as an RFC 3339 UTC time, to the second.
pub fn format_millis(millis: i64) -> String {
    let time = std::time::UNIX_EPOCH + Duration::from_millis(millis.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

/// "12 s ago", "5 min ago", "3 h ago", "2 d ago".
pub fn ago(millis: i64, now: i64) -> String {
    if millis <= 0 {
        return "never".into();
    }
    let secs = (now - millis).max(0) / 1000;
    match secs {
        0..120 => format!("{secs} s ago"),
        120..7_200 => format!("{} min ago", secs / 60),
        7_200..172_800 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cells(rows: &[&[&str]]) -> Vec<Vec<String>> {
        rows.iter()
            .map(|r| r.iter().map(|c| c.to_string()).collect())
            .collect()
    }

    #[test]
    fn tables_fit_their_widest_cell_and_end_without_spaces() {
        let table = render_table(
            &["A", "BB", "C"],
            cells(&[&["xxx", "", ""], &["y", "z", "w"]]),
        );
        assert_eq!(table, "A    BB  C\nxxx\ny    z   w\n");
    }

    #[test]
    fn fixed_tables_are_formatted_as_with_padding() {
        let rows = [["a-name-longer-than-eight", "x", ""], ["b", "y", "z"]];
        let table = render_fixed_table(
            &["NAME", "S", "LAST"],
            &[8, 3, 5],
            rows.iter()
                .map(|r| r.iter().map(|c| c.to_string()).collect())
                .collect(),
        );
        let mut want = format!("{:<8} {:<3} {:<5}\n", "NAME", "S", "LAST");
        for [a, b, c] in rows {
            want.push_str(&format!("{a:<8} {b:<3} {c:<5}\n"));
        }
        assert_eq!(table, want);
        let unpadded = render_fixed_table(&["ID", "TAIL"], &[4, 0], cells(&[&["1", "t"]]));
        assert_eq!(
            unpadded,
            format!("{:<4} {}\n{:<4} {}\n", "ID", "TAIL", "1", "t")
        );
    }

    #[test]
    fn ages_read_well() {
        let now = 1_000_000_000;
        assert_eq!(ago(now - 12_000, now), "12 s ago");
        assert_eq!(ago(now - 300_000, now), "5 min ago");
        assert_eq!(ago(now - 3 * 3_600_000, now), "3 h ago");
        assert_eq!(ago(now - 3 * 86_400_000, now), "3 d ago");
        assert_eq!(ago(0, now), "never");
    }
}
