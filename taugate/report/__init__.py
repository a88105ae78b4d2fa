"""Result files of the reproduction: CSV, Markdown / LaTeX tables, figures."""
