"""Helpers that turn core results into Dagster metadata (tables, markdown, JSON)."""

import dagster as dg
import pandas as pd

from parity_pipeline.core.data.sampling import SampledPanel, stats_as_dicts


def per_symbol_table(sampled: SampledPanel) -> dg.TableMetadataValue:
    # nan_rates (one per column) stay in the per_symbol_stats JSON: a cell would hold a dict
    rows = [{"symbol": symbol, **{k: v for k, v in values.items() if k != "nan_rates"}}
            for symbol, values in stats_as_dicts(sampled).items()]
    return frame_to_table(pd.DataFrame(rows))


def frame_to_table(frame: pd.DataFrame, max_rows: int = 200) -> dg.TableMetadataValue:
    """A Dagster table from a frame: floats rounded for reading, types declared per column."""
    columns = [dg.TableColumn(str(name), _column_type(frame[name])) for name in frame.columns]
    records = [dg.TableRecord({str(k): _cell(v) for k, v in row.items()})
               for row in frame.head(max_rows).to_dict(orient="records")]
    return dg.MetadataValue.table(records=records, schema=dg.TableSchema(columns=columns))


def _column_type(column: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(column):
        return "bool"
    if pd.api.types.is_integer_dtype(column):
        return "int"
    if pd.api.types.is_float_dtype(column):
        return "float"
    return "string"


def _cell(value):
    if isinstance(value, bool):
        return value
    if isinstance(value, float):
        return None if pd.isna(value) else round(value, 6)
    if isinstance(value, int):
        return value
    return None if value is None else str(value)
