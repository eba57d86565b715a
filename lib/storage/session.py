"""The one SparkSession builder: local Iceberg lakehouse on SQLite, or the Glue session on AWS."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

from lib.core.errors import EnvironmentSetupError
from lib.storage.package import package_lib, package_name

SQLITE_JDBC_JAR = Path("/usr/share/java/sqlite-jdbc.jar")
ICEBERG_JAR_NAME = "iceberg-spark-runtime-3.5_2.12-1.10.2.jar"
ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"


def iceberg_runtime_jar() -> Path:
    """The Iceberg Spark runtime jar shipped by the PyPI package snowpark-connect-deps-iceberg."""
    try:
        jar = Path(str(resources.files("snowpark_connect_deps_iceberg"))) / "jars" / ICEBERG_JAR_NAME
    except ModuleNotFoundError as exc:
        raise EnvironmentSetupError(
            "The Iceberg runtime jar is missing: install the pinned environment with `make setup` "
            "(it comes from the PyPI package snowpark-connect-deps-iceberg==1.0.2)."
        ) from exc
    if not jar.is_file():
        raise EnvironmentSetupError(f"Expected the Iceberg runtime jar at {jar}; reinstall with `make setup`.")
    return jar


def sqlite_jdbc_jar() -> Path:
    """The SQLite JDBC driver that Iceberg's JdbcCatalog needs (Debian: libxerial-sqlite-jdbc-java)."""
    override = os.environ.get("SQLITE_JDBC_JAR")
    jar = Path(override) if override else SQLITE_JDBC_JAR
    if not jar.is_file():
        raise EnvironmentSetupError(
            f"The SQLite JDBC driver is missing at {jar}. Install it with "
            "`sudo apt-get install libxerial-sqlite-jdbc-java`, or point SQLITE_JDBC_JAR at a sqlite-jdbc jar."
        )
    return jar


def check_java() -> int:
    """Return the Java major version, or raise when Java 17+ is not available."""
    search_path = os.path.join(os.environ.get("JAVA_HOME", ""), "bin") + os.pathsep + os.environ.get("PATH", "")
    java = shutil.which("java", path=search_path)
    if not java:
        raise EnvironmentSetupError("Java 17 or newer is required by Spark and was not found: install openjdk-17-jre.")
    out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
    try:
        version = out.split('"')[1]
        major = int(version.split(".")[0])
    except (IndexError, ValueError) as exc:
        raise EnvironmentSetupError(f"Could not read the Java version from: {out.strip()!r}") from exc
    if major < 17:
        raise EnvironmentSetupError(f"Java 17 or newer is required, found {version}: install openjdk-17-jre.")
    return major


def local_catalog_conf(catalog: str, warehouse: Path) -> dict[str, str]:
    """Spark settings for an Iceberg JdbcCatalog on SQLite at <warehouse>/catalog.db."""
    warehouse = warehouse.resolve()
    prefix = f"spark.sql.catalog.{catalog}"
    return {
        prefix: "org.apache.iceberg.spark.SparkCatalog",
        f"{prefix}.catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        f"{prefix}.uri": f"jdbc:sqlite:{warehouse / 'catalog.db'}",
        f"{prefix}.warehouse": warehouse.as_uri(),
        # V1 (with the iceberg_type column) is the layout pyiceberg's SqlCatalog reads without warnings.
        f"{prefix}.jdbc.schema-version": "V1",
        f"{prefix}.cache-enabled": "false",
        # SQLite locks the whole file: WAL lets readers and the committer overlap, and a busy timeout makes
        # a second writer wait for the lock instead of failing the commit at once.
        f"{prefix}.jdbc.journal_mode": "WAL",
        f"{prefix}.jdbc.busy_timeout": "60000",
    }


_RETIRED_CATALOGS: list = []  # catalogs replaced by renew_catalog_connections, still in use by older plans


def renew_catalog_connections(spark) -> list[str]:
    """Give every Iceberg JDBC catalog of the session a new pool of catalog connections; returns their names.

    Iceberg's JdbcCatalog (1.10) leaves a metadata query open on one pooled connection when it starts
    (updateSchemaIfRequired), and SQLite in WAL mode keeps that connection reading catalog.db as it was then. Once
    another process has committed (a concurrent run, a publish in another process, the stream), that connection reads
    stale table pointers and cannot write (SQLITE_BUSY_SNAPSHOT). Initializing the catalog again opens a new pool as
    of now. The old catalog is kept open, not closed: frames and tables loaded before hold its pool (a cached
    DataFrame counted later, a table Spark resolved earlier in the step), and closing it made them fail with "Cannot
    get a client from a closed pool". Its connections end with the process; a run renews at most a few times.
    """
    conf = dict(spark.sparkContext.getConf().getAll())
    renewed = []
    for key, value in conf.items():
        name = key.removeprefix("spark.sql.catalog.")
        if name == key or "." in name or value != "org.apache.iceberg.spark.SparkCatalog":
            continue
        if not conf.get(f"{key}.catalog-impl", "").endswith("JdbcCatalog"):
            continue
        options = spark._jvm.java.util.HashMap()
        for option, setting in conf.items():
            if option.startswith(f"{key}."):
                options.put(option[len(key) + 1 :], setting)
        plugin = spark._jsparkSession.sessionState().catalogManager().catalog(name)
        stale = plugin.icebergCatalog()
        plugin.initialize(name, spark._jvm.org.apache.spark.sql.util.CaseInsensitiveStringMap(options))
        _RETIRED_CATALOGS.append(stale)  # referenced, not closed: see above
        renewed.append(name)
    return renewed


def build_local_session(
    catalog: str, warehouse: str | Path, app_name: str = "stocks", shuffle_partitions: int = 8, master: str = ""
):
    """A SparkSession with Iceberg, a SQLite JdbcCatalog and quiet logs, on `master` (empty: local[*]).

    On a cluster (`spark://host:port`) the executors are other processes, in other folders: they get `lib` as a
    zip added to the context, and the jars through spark.jars. The warehouse must be a path they all see (on
    one machine, any local folder; across machines, a shared file system).
    """
    check_java()
    warehouse = Path(warehouse)
    warehouse.mkdir(parents=True, exist_ok=True)
    # Executors must run the same interpreter as the driver, or pickled functions break.
    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from pyspark.sql import SparkSession

    # spark-submit reads log4j2.properties from SPARK_CONF_DIR when the driver JVM starts.
    conf_dir = Path(__file__).with_name("spark_conf").resolve()
    os.environ["SPARK_CONF_DIR"] = str(conf_dir)
    java_opts = f"-Dlog4j2.configurationFile={(conf_dir / 'log4j2.properties').as_uri()}"
    jars = ",".join(str(j) for j in (iceberg_runtime_jar(), sqlite_jdbc_jar()))
    builder = (
        SparkSession.builder.master(master or "local[*]")
        .appName(app_name)
        .config("spark.jars", jars)
        .config("spark.sql.extensions", ICEBERG_EXTENSIONS)
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.shuffle.partitions", str(shuffle_partitions))
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.extraJavaOptions", java_opts)
        .config("spark.executor.extraJavaOptions", java_opts)
        .config("spark.driver.memory", os.environ.get("SPARK_DRIVER_MEMORY", "4g"))
        .config("spark.sql.warehouse.dir", str((warehouse / "spark-warehouse").resolve()))
        .config("spark.sql.defaultCatalog", catalog)
    )
    for key, value in local_catalog_conf(catalog, warehouse).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if not spark.sparkContext.master.startswith("local"):
        ship_lib(spark, warehouse)
    return spark


def ship_lib(spark, folder: Path) -> Path:
    """Add `lib` as a zip to the context, so executors that do not share the driver's folder import it.

    The zip is content-addressed (one per version of the code) under `folder`/.spark-lib.
    """
    package = package_lib()
    target = folder.resolve() / ".spark-lib" / package_name(package)
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.part")
        partial.write_bytes(package)
        partial.replace(target)  # atomic: a concurrent run sees the whole zip or none
    spark.sparkContext.addPyFile(str(target))
    return target


def build_glue_session(catalog: str, warehouse: str):
    """The Glue job's SparkSession, with an Iceberg GlueCatalog named `catalog` on `warehouse`."""
    from pyspark.sql import SparkSession

    try:  # In a Glue job or interactive session, start Glue's own context so the session below is Glue's.
        from awsglue.context import GlueContext
    except ImportError:
        GlueContext = None
    if GlueContext is not None:
        from pyspark import SparkContext

        GlueContext(SparkContext.getOrCreate())
    prefix = f"spark.sql.catalog.{catalog}"
    builder = (
        SparkSession.builder.config("spark.sql.extensions", ICEBERG_EXTENSIONS)
        .config(prefix, "org.apache.iceberg.spark.SparkCatalog")
        .config(f"{prefix}.catalog-impl", "org.apache.iceberg.aws.glue.GlueCatalog")
        .config(f"{prefix}.io-impl", "org.apache.iceberg.aws.s3.S3FileIO")
        .config(f"{prefix}.warehouse", warehouse)
        .config("spark.sql.sources.partitionOverwriteMode", "dynamic")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.sql.defaultCatalog", catalog)
    )
    return builder.getOrCreate()
