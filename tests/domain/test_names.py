"""domain.names: the small naming rules shared by flows, tasks and remote."""

from domain.names import artifact_key, is_address, known_hosts_label


def test_is_address_accepts_ipv4_and_ipv6_not_names():
    assert is_address("10.0.0.5") and is_address("fd00::5")
    assert not is_address("backend1") and not is_address("10.0.0.256")


def test_known_hosts_label_brackets_only_other_ports():
    assert known_hosts_label("10.0.0.5", 22) == "10.0.0.5"
    assert known_hosts_label("10.0.0.5", 2222) == "[10.0.0.5]:2222"


def test_artifact_key_keeps_letters_and_digits_joined_by_single_dashes():
    assert artifact_key("Backend_1 (prod)", "node") == "backend-1-prod"
    assert artifact_key("***", "node") == "node"
