"""Post-processing: the model's raw text -> blocks with boxes -> Markdown, plain text or HTML for one page.

Writers call these functions; nothing here knows about files or the command line.
"""
