//! Analytics (`/analytics`): the per-agent usage table of the current
//! month (in the page, sortable), and two charts fetched after the page
//! shows: token issuances per day over 30 days
//! (`/analytics/token-trend.svg`) and the weekday x hour heatmap
//! (`/analytics/heatmap.svg`), drawn as SVG by [`super::charts`].

use maud::{Markup, html};
use sentryagent_core::AgentUsageRow;

use super::fmt::number;

/// The page's main content: the table now, the charts' containers to fill.
pub(crate) fn content(prefix: &str, month: &str, rows: &[AgentUsageRow]) -> Markup {
    html! {
        section .analytics {
            figure .chart-box data-chart="token-trend" data-src={ (prefix) "/analytics/token-trend.svg" } {
                figcaption { "Token issuances per day, last 30 days (UTC)" }
                div .chart-slot {
                    a href={ (prefix) "/analytics/token-trend.svg" } { "Open the chart" }
                }
            }
            figure .chart-box data-chart="heatmap" data-src={ (prefix) "/analytics/heatmap.svg" } {
                figcaption { "Token issuances by weekday and hour (UTC), last 28 days" }
                div .chart-slot {
                    a href={ (prefix) "/analytics/heatmap.svg" } { "Open the chart" }
                }
            }
            h2 #agent-usage-title { "Agents in " (month) }
            @if rows.is_empty() {
                p .note { "No agent got a token this month yet." }
            }
            div .table-wrap {
                table #agent-usage data-sortable aria-labelledby="agent-usage-title" {
                    thead {
                        tr {
                            th scope="col" data-sort="name" { button type="button" { "Agent" } }
                            th scope="col" data-sort="id" { button type="button" { "Client id" } }
                            th scope="col" data-sort="tokens" data-type="number" aria-sort="descending" {
                                button type="button" { "Tokens" }
                            }
                        }
                    }
                    tbody {
                        @for r in rows {
                            tr {
                                td {
                                    @match &r.name {
                                        Some(n) => a href={ (prefix) "/agents/" (r.agent_id) } { (n) },
                                        None => em { "(deleted)" },
                                    }
                                }
                                td { code { (r.agent_id) } }
                                td .num data-value=(r.token_issuances) { (number(r.token_issuances)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sentryagent_core::AgentId;

    use super::*;

    #[test]
    fn the_table_is_in_the_page_and_the_charts_are_containers_to_fill() {
        let rows = vec![
            AgentUsageRow {
                agent_id: AgentId::generate(),
                name: Some("<b>bot</b>".into()),
                token_issuances: 1200,
            },
            AgentUsageRow {
                agent_id: AgentId::generate(),
                name: None,
                token_issuances: 3,
            },
        ];
        let page = content("/c", "2026-12", &rows).into_string();
        assert_eq!(page.matches("<tr>").count(), 3);
        assert!(page.contains("&lt;b&gt;bot&lt;/b&gt;"));
        assert!(page.contains(r#"data-value="1200">1,200</td>"#));
        assert!(
            page.contains(r#"data-chart="token-trend" data-src="/c/analytics/token-trend.svg""#)
        );
        assert!(page.contains(r#"data-chart="heatmap" data-src="/c/analytics/heatmap.svg""#));
        assert!(page.contains("(deleted)"));
    }
}
