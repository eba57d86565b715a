"""The lakehouse: the Spark session, the Iceberg catalog and its tables, the monthly arrays, write-audit-publish,
and the reader without a JVM."""
