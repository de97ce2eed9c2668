//! Reading keyledger's Prometheus metrics as an operator's scraper does: `/metrics`
//! parsed with a real parser.

use prometheus_parse::{Scrape, Value};

/// One scrape of `/metrics` at `ops`, parsed.
pub async fn scrape(http: &reqwest::Client, ops: &str) -> Scrape {
    let r = http.get(format!("{ops}/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = r.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text format")
}

/// The samples of `name` whose labels include `labels`.
fn samples<'a>(
    scrape: &'a Scrape,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = &'a Value> {
    scrape
        .samples
        .iter()
        .filter(move |s| s.metric == name)
        .filter(move |s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| &s.value)
}

/// The value of the counter or gauge `name` whose labels include `labels` (summed over
/// the rest), 0 when absent.
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(scrape, name, labels)
        .map(|value| match value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
            other => panic!("{name} is not a counter or gauge: {other:?}"),
        })
        .sum()
}

/// The count of the histogram `name` whose labels include `labels`.
pub fn observations(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(scrape, name, labels)
        .map(|value| match value {
            Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
            other => panic!("{name} is not a histogram: {other:?}"),
        })
        .sum()
}
