"""The stack's S3Proxy service and the per-profile jar stamps that let a profile be added
without refetching (and deleting) the jars of services already running."""

from __future__ import annotations

from pathlib import Path

from histfill import stack

POM = """<project><properties><a.version>1</a.version></properties><profiles>
<profile><id>kafka</id><dependencies>K1</dependencies></profile>
<profile><id>s3proxy</id><dependencies>S1</dependencies></profile>
</profiles></project>"""


def test_adding_or_changing_another_profile_keeps_a_profiles_stamp(tmp_path: Path) -> None:
    """Kafka's stamp ignores the S3Proxy profile's edits, and follows its own and the versions."""
    pom = tmp_path / "pom.xml"
    pom.write_text(POM)
    kafka = stack._profile_stamp(pom, "kafka")
    pom.write_text(POM.replace("S1", "S2"))
    assert stack._profile_stamp(pom, "kafka") == kafka
    pom.write_text(POM.replace("K1", "K2"))
    assert stack._profile_stamp(pom, "kafka") != kafka
    pom.write_text(POM.replace("<a.version>1", "<a.version>2"))
    assert stack._profile_stamp(pom, "kafka") != kafka


def test_s3proxy_service_runs_from_its_own_jars_with_the_archive_defaults(tmp_path: Path) -> None:
    """S3Proxy: its own profile, port 9100, filesystem backend under .stack/data, the same
    credentials the archive's settings default to, quiet logging."""
    service = next(s for s in stack.SERVICES if s.name == "s3proxy")
    assert (service.profile, service.port) == ("s3proxy", 9100)
    paths = stack.StackPaths(root=tmp_path)
    paths.conf.mkdir(parents=True)
    service.prepare(paths)
    conf = (paths.conf / "s3proxy.properties").read_text()
    assert f"jclouds.filesystem.basedir={paths.data / 's3proxy'}" in conf
    assert "s3proxy.identity=local-identity" in conf
    assert "s3proxy.credential=local-credential" in conf
    assert "s3proxy.endpoint=http://127.0.0.1:9100" in conf
    argv = service.command(paths)
    assert "org.gaul.s3proxy.Main" in argv
    assert any(a.startswith("-Dlogback.configurationFile=") for a in argv)
    assert 'level="WARN"' in (paths.conf / "s3proxy-logback.xml").read_text()
