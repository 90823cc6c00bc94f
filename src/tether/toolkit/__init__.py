"""Small, safe built-in tools: workspace files, HTTP fetch, an opt-in shell, and a trash."""
