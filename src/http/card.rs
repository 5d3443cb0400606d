/*!
One package's card on the page: icon, names, description, facts, categories, tags, the
download link and form, and with `--keep-versions` the other versions and variants of the
same id and architecture, each with its own download link. Everything from the package goes
through `escape`.
*/

use super::html::escape;
use crate::package::digest::to_hex;
use crate::store::index::{Entry, Icon, percent_encode};
use std::fmt::Write;
use std::sync::Arc;

/// Bytes as people read them.
fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

pub fn render_card(
    html: &mut String,
    entry: &Entry,
    versions: &[Arc<Entry>],
    signs_downloads: bool,
) {
    let info = &entry.info;
    let (id, arch) = (entry.id(), entry.arch());
    let query = format!(
        "id={}&architecture={}",
        percent_encode(id),
        percent_encode(arch)
    );
    let icon = match entry.icon {
        Icon::None => "/static/placeholder.svg".to_string(),
        _ => format!("/package/icon?{query}"),
    };
    // The English name first, then the others (on hover, and in a disclosure).
    let title = info
        .names
        .get("en")
        .or_else(|| info.names.values().next())
        .map_or(id, String::as_str);
    let all_names: Vec<String> = info
        .names
        .iter()
        .map(|(language, name)| format!("{language}: {name}"))
        .collect();
    let _ = write!(
        html,
        r#"<article class="card" data-id="{id}" data-architecture="{arch}">
  <img class="icon" src="{icon}" alt="" width="64" height="64" loading="lazy">
  <div class="main">
    <h2 class="name" title="{names}">{title}</h2>
    <p class="package-id"><code>{id}</code></p>
"#,
        id = escape(id),
        arch = escape(arch),
        icon = escape(&icon),
        names = escape(&all_names.join("\n")),
        title = escape(title),
    );
    // The English description, else the first.
    if let Some(description) = info
        .descriptions
        .get("en")
        .or_else(|| info.descriptions.values().next())
        .filter(|d| !d.is_empty())
    {
        let _ = writeln!(
            html,
            r#"    <p class="description">{}</p>"#,
            escape(description)
        );
    }
    let others: Vec<(&String, &String)> = info
        .names
        .iter()
        .filter(|(l, _)| l.as_str() != "en")
        .collect();
    if info.names.contains_key("en") && !others.is_empty() || others.len() > 1 {
        let _ = write!(
            html,
            r#"    <details class="names"><summary>{} other name{}</summary><ul>"#,
            others.len(),
            if others.len() == 1 { "" } else { "s" }
        );
        for (language, name) in &others {
            let _ = write!(
                html,
                r#"<li><span class="lang">{}</span> {}</li>"#,
                escape(language),
                escape(name)
            );
        }
        html.push_str("</ul></details>\n");
    }
    let _ = write!(
        html,
        r#"    <dl class="facts">
      <div><dt>Version</dt><dd class="version">{version}</dd></div>
      <div><dt>Architecture</dt><dd class="architecture">{arch}</dd></div>
      <div><dt>Size</dt><dd class="size" title="{bytes} bytes">{size}</dd></div>
      <div class="wide"><dt>SHA-1</dt><dd class="sha1"><code>{sha1}</code></dd></div>
    </dl>
"#,
        version = escape(info.version.as_deref().unwrap_or("")),
        arch = escape(arch),
        bytes = info.file_size,
        size = human_size(info.file_size),
        sha1 = to_hex(&info.sha1),
    );
    let chips = |class: &str, values: Vec<String>| -> String {
        if values.is_empty() {
            return String::new();
        }
        let items: String = values
            .iter()
            .map(|v| format!("<li>{}</li>", escape(v)))
            .collect();
        format!("    <ul class=\"chips {class}\">{items}</ul>\n")
    };
    html.push_str(&chips("categories", info.categories.clone()));
    html.push_str(&chips(
        "tags",
        info.tags.iter().map(|t| t.to_string()).collect(),
    ));
    render_versions(html, versions);
    let _ = write!(
        html,
        r#"    <div class="actions">
      <a class="download-link" href="/package/download?{query}" download>{file}</a>
      <form class="download" method="get" action="/package/download">
        <input type="hidden" name="id" value="{id}">
        <input type="hidden" name="architecture" value="{arch}">
{hardware_id}        <button type="submit">Download</button>
      </form>
      <button type="button" class="remove" data-id="{id}" data-architecture="{arch}" hidden>Remove</button>
    </div>
  </div>
</article>
"#,
        id = escape(id),
        arch = escape(arch),
        query = escape(&query),
        file = escape(&entry.file_name()),
        hardware_id = if signs_downloads {
            "        <input type=\"text\" name=\"hardware-id\" placeholder=\"hardware id (optional)\" aria-label=\"hardware id\">\n"
        } else {
            ""
        },
    );
}

/// The other versions and variants of a card's id and architecture (`--keep-versions`), each
/// with a download link that selects it (version and tags).
fn render_versions(html: &mut String, others: &[Arc<Entry>]) {
    if others.is_empty() {
        return;
    }
    let _ = write!(
        html,
        r#"    <details class="versions"><summary>{} other version{}</summary><ul>"#,
        others.len(),
        if others.len() == 1 { "" } else { "s" }
    );
    for other in others {
        let mut query = format!(
            "id={}&architecture={}&version={}",
            percent_encode(other.id()),
            percent_encode(other.arch()),
            percent_encode(other.version())
        );
        let tags: Vec<String> = other.info.tags.iter().map(|t| t.to_string()).collect();
        for tag in &tags {
            query.push_str(&format!("&tag={}", percent_encode(tag)));
        }
        let _ = write!(
            html,
            r#"<li><a class="version-download" href="/package/download?{query}" download>{version}</a> <span class="tags">{tags}</span></li>"#,
            query = escape(&query),
            version = escape(other.version()),
            tags = escape(&tags.join(", ")),
        );
    }
    html.push_str(
        "</ul></details>
",
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(2048), "2.0 KiB");
        assert_eq!(human_size(64 << 20), "64.0 MiB");
    }
}
