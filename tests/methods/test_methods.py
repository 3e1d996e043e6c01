"""jaxretrieval.methods: the registry, building from a config, and each method's retrieval rule."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from jaxretrieval import index as index_lib
from jaxretrieval import methods
from jaxretrieval.models import build_model
from jaxretrieval.training import config as config_lib


def _method_and_model(name):
    config = config_lib.base_config(name)
    config.model.update(dict(in_channels=1, width=4, hidden_dim=16, num_bits=16, descriptor_dim=8, pq_hidden_dim=8))
    model = build_model(config.model, rngs=nnx.Rngs(0))
    model.eval()
    return methods.build_method(config), model


def test_the_built_in_methods_and_their_heads():
    assert {name: method.head for name, method in methods.METHODS.items()} == {
        "csq": "hash", "pairwise": "hash", "triplet": "hash", "spq": "pq", "map_q": "ap"
    }
    assert [name for name, method in methods.METHODS.items() if issubclass(method, methods.ListwiseMethod)] == ["map_q"]


def test_build_method_errors_name_the_choices_and_the_head():
    config = config_lib.base_config("csq")
    config.method = "hashnet"
    with pytest.raises(ValueError, match=r"unknown method 'hashnet': config.method must be one of \['csq', 'map_q'"):
        methods.build_method(config)
    config = config_lib.base_config("csq")
    config.method = "map_q"
    with pytest.raises(ValueError, match="'map_q' trains a 'ap' head but config.model.head='hash'"):
        methods.build_method(config)
    with pytest.raises(ValueError, match="already registered"):
        methods.register_method(methods.CSQ)


def test_build_method_reads_its_hyperparameters_from_the_loss_section():
    config = config_lib.base_config("triplet")
    config.loss.margin = 0.3
    config.augment.flip = False
    method = methods.build_method(config)
    assert method.margin == 0.3 and method.inputs.flip is False and method.distance == "cosine"


@pytest.mark.parametrize("name", ["csq", "pairwise", "triplet"])
def test_hash_methods_search_sign_codes_by_hamming_distance(name):
    method, model = _method_and_model(name)
    index = method.new_index(model)
    assert isinstance(index, index_lib.HammingIndex) and index.num_bits == 16
    representations = np.random.default_rng(0).standard_normal((20, 16)).astype(np.float32)
    index.add(representations)
    distances, ids = index.search(representations[:3], 1)
    np.testing.assert_array_equal(distances[:, 0], 0)
    assert list(method.evaluation_indexes(model)) == [""]


def test_spq_searches_pq_codes_of_the_models_codebooks():
    method, model = _method_and_model("spq")
    index = method.new_index(model)
    assert isinstance(index, index_lib.PQIndex) and index.distance == "spq"
    np.testing.assert_array_equal(index.codebooks, np.asarray(model.head.codebooks[...]))


def test_map_q_searches_descriptors_by_cosine_and_also_scores_their_sign_codes():
    method, model = _method_and_model("map_q")
    indexes = method.evaluation_indexes(model)
    assert list(indexes) == ["", "binary_"]
    assert isinstance(indexes[""], index_lib.FlatIndex) and indexes[""].metric == "inner_product"
    assert isinstance(indexes["binary_"], index_lib.HammingIndex) and indexes["binary_"].num_bits == 8
    assert isinstance(method.new_index(model), index_lib.FlatIndex)
    assert method.finalize is not None and methods.CSQ.finalize is None


def test_csq_extras_are_the_hash_centers_and_a_tie_breaker():
    method, _ = _method_and_model("csq")
    extras = method.init_extras(10, jax.random.key(0))
    assert extras["centers"].shape == (10, 16) and set(np.unique(extras["centers"])) == {-1.0, 1.0}
    assert extras["tie_breaker"].shape == (16,)


def test_input_transform_checks_its_augmentation_and_normalises():
    with pytest.raises(ValueError, match="config.augment.name must be one of"):
        methods.InputTransform(augmentation="simclr")
    transform = methods.InputTransform(mean=(0.5,), std=(0.25,))
    images = jnp.full((1, 2, 2, 1), 255, jnp.uint8)
    np.testing.assert_allclose(transform.model_input(images), 2.0)
    view = transform.training_view(jax.random.key(0), images)
    assert view.shape == (1, 2, 2, 1) and view.dtype == jnp.float32
