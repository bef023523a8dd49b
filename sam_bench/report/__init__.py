"""Reading result records: sweep summary, console tables (plots and reports come here too).

Nothing in this package imports model code: it reads ``result.json`` files only.
"""
