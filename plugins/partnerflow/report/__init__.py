"""The Board's MI reporting: KPIs, disclosure control, the pack, pre-briefs, approval and distribution.

- ``kpis``: each configured KPI for a period from its mart view (after disclosure control), its trend,
  RAG and direction of travel; the partnership's own timeliness and data-quality measures; which
  partners' returns are missing, late or rejected.
- ``disclosure``: the small-number rules (DfE ``c``, NHS ``*`` and rounding) and secondary suppression.
- ``boardpack``: a period's pack content and its files (PDF via ``pdf`` and ``charts``, an HTML copy,
  the email summary, a CSV of the figures).
- ``distribution``: drafts and versions in ``ops.board_packs``, and sending each version once.
- ``prebrief``: the private "no surprises" message to partner leads about their red measures.
- ``approval``: the officer's approval (``partnerflow approve-pack``), auto-approval, and readiness.
"""
