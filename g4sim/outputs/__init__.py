"""What users read: terminal rendering, sweep tables, HTML reports and the CI check — all from evaluations."""
