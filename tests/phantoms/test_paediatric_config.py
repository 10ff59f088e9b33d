"""`mcproton run` with phantom.type = "paediatric" takes phantom.sex and phantom.region, as `mcproton phantom` and
make_head_phantom do (phantom audit F6.2: they were refused as unknown keys, and it always built a male neuraxis
phantom); an unknown key's refusal lists the keys of this phantom type only (before: all of [phantom], material and
layers among them)."""
from __future__ import annotations

import pytest

from mcproton.config import ConfigError, build_geometry, validate_config


def test_sex_and_region_are_taken():
    g = build_geometry({"phantom": {"type": "paediatric", "age_years": 5, "voxel_mm": 8, "sex": "female",
                                    "region": "head"}})
    assert g.meta["sex"] == "female" and g.meta["region"] == "head"


@pytest.mark.parametrize("key, value, hint", [("sex", "femal", "did you mean 'female'"),
                                              ("region", "torso", "'neuraxis', 'head_neck', 'head'")])
def test_a_wrong_choice_is_refused(key, value, hint):
    with pytest.raises(ConfigError, match=f"phantom.{key} = '{value}' is not one of .*{hint}"):
        build_geometry({"phantom": {"type": "paediatric", "voxel_mm": 8, key: value}})


def test_an_unknown_key_lists_the_keys_of_its_type():
    with pytest.raises(ConfigError) as err:
        validate_config({"phantom": {"type": "paediatric", "gender": "female"}})
    msg = str(err.value)
    assert msg.endswith('valid keys of phantom.type = "paediatric": type, age_years, voxel_mm, sex, region'), msg
    assert "layers" not in msg and "material" not in msg
