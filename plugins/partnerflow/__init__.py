"""partnerflow: pull, check, load and report a safeguarding partnership's data returns."""
