"""Cells of the CSVs partnerflow writes (the Board pack's figures, a rejection's row list), made safe to
open in a spreadsheet.

A cell that starts with ``=``, ``+``, ``-`` or ``@`` is read by Excel, LibreOffice and Google Sheets as a
formula (``=HYPERLINK(...)`` in a KPI title or category would run when the officer opens the file), and
one that starts with a tab or a carriage return can be too, once the spreadsheet trims it. Each such cell is
prefixed with ``'`` so it shows as text (OWASP's advice for CSV injection); everything else is unchanged.
"""

from __future__ import annotations

SPREADSHEET_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(cell: object) -> str:
    """``cell`` as text a spreadsheet shows as text: one starting = + - @, tab or CR gets a leading ``'``."""
    text = "" if cell is None else str(cell)
    return "'" + text if text.startswith(SPREADSHEET_TRIGGERS) else text
