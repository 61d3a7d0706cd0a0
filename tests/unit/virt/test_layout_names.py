"""The names of an instance directory's files and of the image cache."""
import pytest

from resize_flows.virt.libvirt import layout

SHA = 'ab' * 32


def test_base_names_are_recognised_and_nothing_else():
    names = [layout.image_base_name(SHA), layout.ephemeral_base_name(2),
             layout.swap_base_name(512)]
    assert names == [SHA, 'ephemeral_2_ext4', 'swap_512']
    assert all(layout.is_base_name(n) for n in names)
    for other in ('AB' * 32, SHA[:-1], 'ephemeral_0_ext4', 'swap_0',
                  'swap_1.part', '../swap_1', 'disk', '.tmp-' + SHA):
        assert not layout.is_base_name(other), other


@pytest.mark.parametrize('bad', ['', 'xyz', 'AB' * 32, None, 12])
def test_image_base_name_refuses_what_is_not_a_sha256(bad):
    with pytest.raises(ValueError):
        layout.image_base_name(bad)


@pytest.mark.parametrize('bad', [0, -1])
def test_blank_bases_need_a_size(bad):
    with pytest.raises(ValueError):
        layout.ephemeral_base_name(bad)
    with pytest.raises(ValueError):
        layout.swap_base_name(bad)


def test_mac_is_stable_per_instance_and_in_novas_range():
    a = layout.mac_address('0b8f8ab2-0f43-4ad6-9e3a-5a2c7b6d1e01')
    b = layout.mac_address('0b8f8ab2-0f43-4ad6-9e3a-5a2c7b6d1e02')
    assert a == layout.mac_address('0b8f8ab2-0f43-4ad6-9e3a-5a2c7b6d1e01')
    assert a != b
    assert a.startswith('fa:16:3e:') and len(a.split(':')) == 6
