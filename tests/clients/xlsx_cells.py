"""Reads a workbook with openpyxl, as a planner's script would: every cell of its first sheet
(dates and times as ISO text, numbers as numbers, booleans as booleans, empty cells as null),
its merged ranges and its frozen pane, as one JSON document on stdout."""

import datetime
import json
import sys

import openpyxl


def value(cell):
    v = cell.value
    if isinstance(v, (datetime.datetime, datetime.date)):
        return v.isoformat()
    return v


workbook = openpyxl.load_workbook(sys.argv[1])
sheet = workbook.worksheets[0]
json.dump(
    {
        "sheets": len(workbook.worksheets),
        "rows": [[value(c) for c in row] for row in sheet.iter_rows()],
        "merged": sorted(str(r) for r in sheet.merged_cells.ranges),
        "freeze": sheet.freeze_panes,
        "filter": sheet.auto_filter.ref,
    },
    sys.stdout,
)
