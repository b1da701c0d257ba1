"""probe.load_model: each saved format loads back to the model it came from; each wrong file says what it is."""

import json
import pickle
import sys
import zipfile

import numpy as np
import pytest
import torch
from bpnetlite.bpnet import BPNet, CountWrapper

import probe
from probe import ProbeError
from probe.devices import model_hygiene
from probe.loading import ExportedModule, check_single_output, load_model, model_file_kind

BPNET_KWARGS = {"n_filters": 8, "n_layers": 2, "n_control_tracks": 0, "verbose": False}

# a hand-written model with its own forward, importable from a file; dropout shows whether it is in eval mode
NET_SOURCE = '''
import torch


class Net(torch.nn.Module):
    def __init__(self, channels=6, classes=2):
        super().__init__()
        self.conv = torch.nn.Conv1d(4, channels, 5, padding=2)
        self.drop = torch.nn.Dropout(0.5)
        self.head = torch.nn.Linear(channels, classes)

    def forward(self, x):
        return self.head(self.drop(torch.relu(self.conv(x))).mean(2))


def make_net(channels=6, classes=2):
    return Net(channels, classes)
'''


def _seqs(n, length=120, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 4, (n, length), generator=g)
    return torch.nn.functional.one_hot(idx, 4).float().transpose(1, 2).contiguous()


@pytest.fixture
def netfile(tmp_path):
    path = tmp_path / "netdef.py"
    path.write_text(NET_SOURCE)
    return path


@pytest.fixture
def net(netfile):
    """A Net with fresh random weights, built through the file factory itself (in eval mode)."""
    return load_model(f"{netfile}:make_net")


@pytest.fixture
def bpnet():
    return BPNet(**BPNET_KWARGS).eval()


def _same(a, b, x):
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------ round trips


def test_state_dict_with_module_factory_and_output(tmp_path, bpnet):
    x = _seqs(3)
    path = tmp_path / "bpnet.pt"
    torch.save(bpnet.state_dict(), path)
    # BPNet returns (profile, counts); output=1 is CountWrapper's answer
    model = load_model(path, factory="bpnetlite.bpnet:BPNet", factory_kwargs=BPNET_KWARGS, output=1)
    _same(model, CountWrapper(bpnet), x)
    # the JSON form of the keyword arguments gives the same model
    again = load_model(path, factory="bpnetlite.bpnet:BPNet", factory_kwargs=json.dumps(BPNET_KWARGS), output=1)
    _same(again, model, x)


def test_state_dict_saved_from_a_wrapper_loads_into_the_inner_model_and_back(tmp_path, bpnet):
    x = _seqs(2)
    wrapped = CountWrapper(bpnet)
    path = tmp_path / "counts.pth"
    torch.save(wrapped.state_dict(), path)  # keys 'model.iconv.weight', ...
    inner = load_model(path, factory="bpnetlite.bpnet:BPNet", factory_kwargs=BPNET_KWARGS, output=1)
    _same(inner, wrapped, x)
    # and the wrapper's keys built from the inner model's file
    torch.save(bpnet.state_dict(), path)
    kwargs = ", ".join(f"{k}={v!r}" for k, v in BPNET_KWARGS.items())
    factory_file = tmp_path / "wrapped.py"
    factory_file.write_text("from bpnetlite.bpnet import BPNet, CountWrapper\n\n"
                            f"def make():\n    return CountWrapper(BPNet({kwargs}))\n")
    _same(load_model(path, factory=f"{factory_file}:make"), wrapped, x)


def test_checkpoint_with_dataparallel_keys_and_file_factory(tmp_path, netfile, net):
    x = _seqs(4, 30)
    ckpt = {"epoch": 7, "model_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()},
            "optimizer_state_dict": torch.optim.SGD(net.parameters(), lr=0.1).state_dict()}
    path = tmp_path / "checkpoint.bin"
    torch.save(ckpt, path)
    model = load_model(path, factory=f"{netfile}:make_net")
    assert not model.training  # dropout off: two calls agree and equal the original in eval mode
    _same(model, net, x)
    _same(model, model, x)
    # a fresh factory model differs, so the equality above came from the file's weights
    with torch.no_grad():
        assert not torch.allclose(load_model(f"{netfile}:make_net")(x), net(x))


def test_legacy_torch_save_format(tmp_path, netfile, net):
    path = tmp_path / "old.pt"
    torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    assert model_file_kind(path) == "torch_legacy"
    _same(load_model(path, factory=f"{netfile}:make_net"), net, _seqs(2, 30))


def test_export_archive_any_batch_size(tmp_path, bpnet):
    wrapped = CountWrapper(bpnet).eval()
    path = tmp_path / "counts.pt2"
    torch.export.save(torch.export.export(wrapped, (_seqs(3),)), path)  # a fixed batch of 3
    assert model_file_kind(path) == "export"
    model = load_model(path)
    assert isinstance(model, ExportedModule) and model.fixed_batch == 3
    for n in (3, 1, 5, 7):  # the same batch, one, and chunks with a padded tail
        _same(model, wrapped, _seqs(n, seed=n))
    # probe's functions put models in eval mode and restore them: the exported module allows it
    with model_hygiene(model):
        assert not model.training
    x = _seqs(2).requires_grad_(True)
    model(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_export_archive_dynamic_batch_and_training_mode_warning(tmp_path, net):
    path = tmp_path / "net.pt2"
    batch = torch.export.Dim("batch")
    torch.export.save(torch.export.export(net, (_seqs(4, 30),), dynamic_shapes={"x": {0: batch}}), path)
    model = load_model(path)
    assert model.fixed_batch is None
    _same(model, net, _seqs(9, 30))
    torch.export.save(torch.export.export(net.train(), (_seqs(4, 30),)), path)
    with pytest.warns(UserWarning, match="exported in training mode"):
        load_model(path)


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning", "ignore:`torch.jit:DeprecationWarning")
def test_torchscript_archive(tmp_path, net):
    path = tmp_path / "net.ts"
    x = _seqs(3, 30)
    torch.jit.trace(net, x).save(str(path))
    assert model_file_kind(path) == "torchscript"
    _same(load_model(path), net, _seqs(5, 30, seed=1))


def test_whole_pickled_module_needs_trust(tmp_path, bpnet):
    wrapped = CountWrapper(bpnet)
    path = tmp_path / "bpnet.final.torch"  # as bpnet-lite's fit() saves it
    torch.save(wrapped, path)
    with pytest.raises(ProbeError) as err:
        load_model(path)
    msg = str(err.value)
    assert str(path) in msg and "bpnetlite.bpnet.CountWrapper" in msg and "--trust-pickle" in msg
    _same(load_model(path, trust_pickle=True), wrapped, _seqs(2))


def test_factory_spec_without_a_file(netfile):
    model = load_model(f"{netfile}:make_net", factory_kwargs={"channels": 3, "classes": 5})
    assert not model.training and model.head.out_features == 5 and model.conv.out_channels == 3
    bp = load_model("bpnetlite.bpnet:BPNet", factory_kwargs=BPNET_KWARGS, output=1)
    assert bp(_seqs(2)).shape == (2, 1)


def test_file_factory_imports_its_neighbours_and_leaves_sys_path(tmp_path):
    (tmp_path / "blocks.py").write_text("import torch\n\ndef block():\n    return torch.nn.Linear(3, 2)\n")
    (tmp_path / "builder.py").write_text("from blocks import block\n\ndef make():\n    return block()\n")
    before = list(sys.path)
    model = load_model(f"{tmp_path / 'builder.py'}:make")
    assert isinstance(model, torch.nn.Linear) and sys.path == before


def test_map_location(tmp_path, netfile, net, device):
    path = tmp_path / "w.pt"
    torch.save(net.state_dict(), path)
    model = load_model(path, factory=f"{netfile}:make_net", map_location=device)
    assert all(p.device.type == device.type for p in model.parameters())
    x = _seqs(2, 30)
    with torch.no_grad():
        torch.testing.assert_close(model(x.to(device)).cpu(), net(x), rtol=1e-4, atol=1e-5)


def test_check_single_output_names_the_outputs(bpnet):
    with pytest.raises(ProbeError, match=r"returns a tuple of 2 outputs \(\[0\] \(1, 2, 14\), \[1\] \(1, 1\)\).*"
                                         r"--model-output"):
        check_single_output(bpnet, _seqs(1), source="bpnet")
    check_single_output(CountWrapper(bpnet), _seqs(1))
    with pytest.raises(ProbeError, match="model returns 2 outputs"):
        probe.loading.SelectOutput(bpnet, 2)(_seqs(1))


# ----------------------------------------------------------------------------------------- wrong files


def _wrong_files(tmp_path, net):
    """(file, keyword arguments, fragments the message must hold)."""
    sd = tmp_path / "weights.pt"
    torch.save(net.state_dict(), sd)
    ts = tmp_path / "scripted.pt"
    torch.jit.script(net).save(str(ts))
    ep = tmp_path / "exported.pt2"
    torch.export.save(torch.export.export(net, (_seqs(2, 30),)), ep)
    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2, 3), tensor)
    opt = tmp_path / "optimiser.pt"
    torch.save(torch.optim.Adam(net.parameters()).state_dict(), opt)
    config = tmp_path / "config.pt"
    torch.save({"epoch": 3, "lr": 0.1}, config)
    text = tmp_path / "notes.txt"
    text.write_text("hello, not a model\n")
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    h5 = tmp_path / "chrombpnet.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(64))
    npz = tmp_path / "arrays.npz"
    np.savez(npz, w=np.zeros(3))
    odd_zip = tmp_path / "bundle.zip"
    with zipfile.ZipFile(odd_zip, "w") as z:
        z.writestr("README", "weights elsewhere")
    factory = "bpnetlite.bpnet:BPNet"
    return [
        (tmp_path / "missing.pt", {}, ["does not exist", "expected a torch.export archive"]),
        (tmp_path, {}, ["is a directory"]),
        (text, {}, ["neither a zip archive nor a pickle", "(it starts with b'hello, not a')"]),
        (sd, {}, ["holds a state_dict (4 tensors, e.g. 'conv.weight'", "--factory module:function"]),
        (ts, {"factory": factory}, ["TorchScript archive", "a factory ('bpnetlite.bpnet:BPNet') is used only"]),
        (ep, {"factory": factory}, ["torch.export archive", "is used only with a state_dict"]),
        (tensor, {}, ["a single tensor of shape (2, 3) (torch.float32), not a model"]),
        (opt, {}, ["an optimiser state_dict (keys 'state', 'param_groups'), not the model's weights"]),
        (config, {}, ["a dict with keys 'epoch', 'lr' but no model weights"]),
        (plain, {}, ["a Python pickle not written by torch.save", "trust_pickle=True"]),
        (h5, {}, ["an HDF5 file", "BPNet.from_chrombpnet(path)"]),
        (npz, {}, ["a NumPy .npz archive"]),
        (odd_zip, {}, ["a zip archive that no torch saver wrote"]),
    ]


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning", "ignore:`torch.jit:DeprecationWarning")
def test_wrong_files_say_what_they_are(tmp_path, net):
    for path, kwargs, fragments in _wrong_files(tmp_path, net):
        with pytest.raises(ProbeError) as err:
            load_model(path, **kwargs)
        msg = str(err.value)
        assert f"'{path}'" in msg, msg
        for fragment in fragments:
            assert fragment in msg, (path.name, msg)


def test_safetensors_file_is_recognised(tmp_path, netfile, net):
    # the format by hand: an 8-byte little-endian header length, a JSON header, then the raw bytes
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    header, offset, blobs = {}, 0, []
    for k, v in state.items():
        raw = v.numpy().tobytes()
        header[k] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    head = json.dumps(header).encode()
    path = tmp_path / "model.safetensors"
    path.write_bytes(len(head).to_bytes(8, "little") + head + b"".join(blobs))
    assert model_file_kind(path) == "safetensors"
    try:
        import safetensors  # noqa: F401
    except ImportError:
        with pytest.raises(ProbeError, match="needs the safetensors package"):
            load_model(path, factory=f"{netfile}:make_net")
    else:
        _same(load_model(path, factory=f"{netfile}:make_net"), net, _seqs(2, 30))


def test_state_dict_that_does_not_fit(tmp_path, netfile, net):
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)
    with pytest.raises(ProbeError) as err:
        load_model(path, factory=f"{netfile}:make_net", factory_kwargs={"channels": 8})
    msg = str(err.value)
    assert "does not fit the model built by" in msg and str(path) in msg
    assert "3 shape mismatch(es) ('conv.weight': file (6, 4, 5), model (8, 4, 5)" in msg
    state = dict(net.state_dict())
    del state["head.bias"]
    state.update({f"extra.{i}": torch.zeros(1) for i in range(7)})
    torch.save(state, path)
    with pytest.raises(ProbeError) as err:
        load_model(path, factory=f"{netfile}:make_net")
    msg = str(err.value)
    assert "1 missing key(s) ('head.bias')" in msg
    assert "7 unexpected key(s) ('extra.0', 'extra.1', 'extra.2', 'extra.3' and 3 more)" in msg


def test_factories_that_cannot_be_found(tmp_path, netfile, net, monkeypatch):
    path = tmp_path / "weights.pt"
    torch.save(net.state_dict(), path)

    def message(**kwargs):
        with pytest.raises(ProbeError) as err:
            load_model(path, **kwargs)
        return str(err.value)

    msg = message(factory="no_such_pkg_xyz.models:make_bpnet")
    assert f"model file '{path}'" in msg and "cannot import module 'no_such_pkg_xyz.models'" in msg
    assert "searched sys.path" in msg
    assert repr(sys.path[0] or "''") in msg and "path/to/models.py:make_bpnet" in msg
    msg = message(factory=f"{netfile}:make_nett")
    assert "has no attribute 'make_nett'" in msg and "'make_net'" in msg
    assert "does not exist" in message(factory=f"{tmp_path / 'absent.py'}:make")
    msg = message(factory=f"{netfile}:make_net", factory_kwargs={"bogus": 1})
    assert "called with {'bogus': 1} failed" in msg and "bogus" in msg
    assert "are not JSON" in message(factory=f"{netfile}:make_net", factory_kwargs="{channels: 6}")
    assert "must be a JSON object" in message(factory=f"{netfile}:make_net", factory_kwargs="[6]")
    assert "is not 'module:function'" in message(factory="netdef")
    # the module is found but something it imports is not installed
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_xyz\n\ndef make():\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    msg = message(factory="needs_dep:make")
    assert "No module named 'no_such_dependency_xyz'" in msg and "a module it imports is not installed" in msg
