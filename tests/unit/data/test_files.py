"""The user's own CSV and NPZ files: task inference, own splits, and a clear error for each bad file."""

import os

import numpy as np
import pytest

from tests.conftest import write_values
from trainer.data import load_source, make_splits
from trainer.runtime.errors import DataError


def write_csv(path, rows, header="a,b,label"):
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    return str(path)


def table(n=40, seed=0):
    rng = np.random.default_rng(seed)
    return [f"{rng.normal():.4f},{rng.normal():.4f},{i % 3}" for i in range(n)]


def test_csv_classification(tmp_path):
    path = write_csv(tmp_path / "t.csv", table())
    src = load_source("csv", path=path, target="label")
    assert src.task == "classification" and src.x.shape == (40, 2) and src.x.dtype == np.float32
    assert src.y.dtype == np.int64 and set(src.y) == {0, 1, 2}
    assert np.allclose(src.x[0], [float(v) for v in table()[0].split(",")[:2]])
    default = load_source("csv", path=path)  # no target: the last column
    assert np.array_equal(default.y, src.y)
    by_other = load_source("csv", path=path, target="a")  # floats: regression
    assert by_other.task == "regression" and by_other.x.shape == (40, 2)
    forced = load_source("csv", path=path, target="label", task="regression")
    assert forced.task == "regression" and forced.y.dtype == np.float32


def test_csv_other_delimiter_and_quotes(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text('"x 1";"y"\n"1.5";0\n2.5;1\n')
    src = load_source("csv", path=str(path), delimiter=";", target="y")
    assert np.allclose(src.x[:, 0], [1.5, 2.5]) and list(src.y) == [0, 1]


def test_csv_from_a_spreadsheet_bom_crlf_blank_lines(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes(b"\xef\xbb\xbfa,b,label\r\n1,2,0\r\n\r\n3,4,1\r\n5,nan,1\r\n")
    with pytest.raises(DataError, match="line 5, column 'b': nan is not a finite number"):
        load_source("csv", path=str(path), target="label")
    path.write_bytes(b"\xef\xbb\xbfa,b,label\r\n1,2,0\r\n\r\n3,4,1\r\n")
    src = load_source("csv", path=str(path), target="a", task="regression")  # despite the BOM
    assert src.y.tolist() == [1, 3] and src.x.tolist() == [[2, 0], [4, 1]]


@pytest.mark.parametrize("rows,message", [
    (["1,2,0", "3,abc,1"], "line 3, column 'b': 'abc' is not a number"),
    (["1,2,0", "3,,1"], "line 3, column 'b': '' is not a number"),
    (["1,2,0", "1,2,1", "nan,4,1"], "line 4, column 'a': nan is not a finite number"),
    (["1,2,0", "inf,4,1"], "line 3, column 'a': inf is not a finite number"),
    (["1,2,0", "1,2"], "line 3 has 2 cells but the header has 3 columns"),
    (["1,2", "3,4"], "line 2 has 2 cells but the header has 3 columns"),
])
def test_csv_bad_cell_names_file_line_and_column(tmp_path, rows, message):
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as err:
        load_source("csv", path=path, target="label")
    assert message in str(err.value) and str(path) in str(err.value)


def test_csv_target_column_that_does_not_exist(tmp_path):
    path = write_csv(tmp_path / "t.csv", table())
    with pytest.raises(DataError, match=r"data.target='class' is not a column .* \['a', 'b', 'label'\]"):
        load_source("csv", path=path, target="class")


@pytest.mark.parametrize("labels,message", [
    ([1, 2, 3], r"labels must be 0..K-1 .* \[1, 2, 3\]; renumber them 0..2"),
    ([-1, 0, 1], r"labels must be 0..K-1 .* \[-1, 0, 1\]"),
    ([0, 2, 3], "set data.task=regression if y is a quantity"),
])
def test_labels_must_be_0_to_k_minus_1(tmp_path, labels, message):
    path = write_csv(tmp_path / "t.csv", [f"{i},{i},{labels[i % 3]}" for i in range(9)])
    with pytest.raises(DataError, match=message):
        load_source("csv", path=path)


def test_missing_empty_and_unreadable_files(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_source("csv", path=str(tmp_path / "nope.csv"))
    with pytest.raises(DataError, match="is not a file"):
        load_source("npz", path=str(tmp_path))
    with pytest.raises(DataError, match="no data rows"):
        load_source("csv", path=write_csv(tmp_path / "empty.csv", []))
    latin = tmp_path / "latin.csv"
    latin.write_bytes("caf\xe9,b\n1,0\n".encode("latin-1"))
    with pytest.raises(DataError, match="cannot read"):
        load_source("csv", path=str(latin))
    with pytest.raises(DataError, match="only the target column"):
        load_source("csv", path=write_csv(tmp_path / "one.csv", ["1", "0"], header="label"))


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads any file")
def test_file_without_read_permission(tmp_path):
    path = write_csv(tmp_path / "t.csv", table())
    os.chmod(path, 0)
    with pytest.raises(DataError, match="cannot read"):
        load_source("csv", path=path)


def test_npz_with_own_splits(tmp_path):
    rng = np.random.default_rng(0)
    path = tmp_path / "d.npz"
    np.savez(path, x=rng.normal(size=(50, 2, 3)), y=np.arange(50) % 4,
             x_test=rng.normal(size=(7, 2, 3)), y_test=np.arange(7) % 4,
             x_val=rng.normal(size=(5, 2, 3)), y_val=np.arange(5) % 4)
    src = load_source("npz", path=str(path))
    assert src.task == "classification" and src.x.shape == (50, 6)  # images are flattened
    s = make_splits(src, val_fraction=0.2, test_fraction=0.2, seed=0)
    assert s.sizes() == {"train": 50, "val": 5, "test": 7} and s.num_classes == 4
    assert np.allclose(s.x_val.numpy(), src.x_val)


def test_npz_regression_inferred_and_forced(tmp_path):
    path = tmp_path / "r.npz"
    np.savez(path, x=np.ones((10, 2)), y=np.linspace(0, 1, 10))
    assert load_source("npz", path=str(path)).task == "regression"
    np.savez(path, x=np.ones((10, 2)), y=np.arange(10) % 2)
    assert load_source("npz", path=str(path), task="regression").y.dtype == np.float32
    np.savez(path, x=np.ones((10, 2)), y=np.linspace(0, 1, 10))
    with pytest.raises(DataError, match="whole-number labels"):
        load_source("npz", path=str(path), task="classification")


@pytest.mark.parametrize("arrays,message", [
    (dict(x=np.ones((10, 2)), y=np.zeros(9, np.int64)), "x has 10 samples but y has 9"),
    (dict(x=np.ones((10, 2)), z=np.zeros(10)), r"needs arrays named 'x' and 'y'.* \['x', 'z'\]"),
    (dict(x=np.full((10, 2), np.nan), y=np.zeros(10)), "x has 20 NaN or infinite values"),
    (dict(x=np.ones((10, 2)), y=np.r_[np.zeros(9), np.inf]), r"y has 1 NaN or infinite .*row 9"),
    (dict(x=np.ones((10, 2)), y=np.arange(10) % 2, x_test=np.ones((3, 2))), "x_test has no y_test"),
    (dict(x=np.ones((10, 2)), y=np.arange(10) % 2, x_test=np.ones((2, 2)), y_test=np.array([1, 2])),
     r"y_test has labels \[2\] that the training labels 0..1 do not have"),
    (dict(x=np.ones((10, 2)), y=np.arange(10) % 2, x_val=np.ones((2, 3)), y_val=np.array([0, 1])),
     r"different numbers of features \[2, 3\]"),
    (dict(x=np.array(["a", "b"]), y=np.arange(2)), "dtype <U1; it must be numeric"),
])
def test_bad_npz(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(DataError, match=message):
        load_source("npz", path=str(path))


def test_npz_that_is_not_an_archive(tmp_path):
    path = tmp_path / "bad.npz"
    path.write_text("x,y\n1,2\n")
    with pytest.raises(DataError, match="cannot read it as an .npz archive"):
        load_source("npz", path=str(path))
    np.save(tmp_path / "x.npy", np.ones((3, 2)))
    with pytest.raises(DataError, match="holds a single array"):
        load_source("npz", path=str(tmp_path / "x.npy"))


def test_csv_without_header_and_with_semicolons(tmp_path):
    rng = np.random.default_rng(0)
    values = np.c_[rng.normal(size=(30, 2)), np.arange(30) % 2]
    plain = load_source("csv", path=str(write_values(tmp_path / "n.csv", values, header=None)))
    assert len(plain.x) == 30  # the first row is data, not a header
    by_number = load_source("csv", path=str(tmp_path / "n.csv"), target="0", task="regression")
    np.testing.assert_allclose(by_number.y, values[:, 0], rtol=1e-5)
    forced = load_source("csv", path=str(tmp_path / "n.csv"), header=True)
    assert len(forced.x) == 29
    semi = write_values(tmp_path / "s.csv", values, header="a;b;y", delimiter=";")
    assert load_source("csv", path=str(semi)).x.shape == (30, 2)
    with pytest.raises(DataError, match="set data.delimiter=';'"):
        load_source("csv", path=str(semi), delimiter=",")
