"""The Board's MI reporting: KPI values from the marts, disclosure control, and the Board pack.

- ``kpis``: each configured KPI for a period (value after disclosure control, trend, RAG, direction of
  travel) and which partners' data is missing.
- ``disclosure``: the small-number rules (DfE ``c``, NHS ``*`` and rounding) every Board figure passes.
- ``boardpack``: the HTML pack and email summary, saved under ``var/boardpack/<period>/``, versioned in
  ``ops.board_packs`` and sent once per period to the Board list through the notification outbox.
"""
