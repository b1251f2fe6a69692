"""What a person looks at: the investigation report's page (Jinja2 templates, inline SVG plots),
the index of reports and the daemon's landing page; `build` makes the same page offline from an
incident bundle or a replay timeline (`mlwatchdog report`)."""
