// pgjdbc against chiso's PostgreSQL protocol, for tests/e2e/clients.rs. Run with
//   java -cp /usr/share/java/postgresql.jar tests/clients/JdbcClient.java PORT TOKEN
// Prints one line per check, tab-separated, for the test to compare with /v1/sql.
import java.sql.*;
import java.time.OffsetDateTime;

public class JdbcClient {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/chiso";
        try (Connection conn = DriverManager.getConnection(url, "chiso", args[1])) {
            DatabaseMetaData meta = conn.getMetaData();
            System.out.println("product\t" + meta.getDatabaseProductName() + "\t" + meta.getDatabaseProductVersion());
            StringBuilder tables = new StringBuilder("tables");
            try (ResultSet rs = meta.getTables(null, "public", "%", new String[] {"TABLE"})) {
                while (rs.next()) tables.append('\t').append(rs.getString("TABLE_NAME"));
            }
            System.out.println(tables);
            StringBuilder columns = new StringBuilder("columns");
            try (ResultSet rs = meta.getColumns(null, "public", "dossiers", "%")) {
                while (rs.next()) columns.append('\t').append(rs.getString("COLUMN_NAME")).append(':').append(rs.getString("TYPE_NAME"));
            }
            System.out.println(columns);
            try (PreparedStatement st = conn.prepareStatement(
                    "SELECT id, received_at FROM dossiers WHERE service_level = ? AND received_at >= ? ORDER BY received_at, id")) {
                st.setInt(1, 3);
                st.setObject(2, OffsetDateTime.parse("2019-04-15T00:00:00+07:00"));
                try (ResultSet rs = st.executeQuery()) {
                    while (rs.next()) {
                        OffsetDateTime at = rs.getObject(2, OffsetDateTime.class);
                        System.out.println("param\t" + rs.getString(1) + "\t" + at.toInstant());
                    }
                }
            }
            try (Statement st = conn.createStatement();
                 ResultSet rs = st.executeQuery(
                    "SELECT date_trunc('month', received_at) AS month, count(*) AS n FROM dossiers GROUP BY 1 ORDER BY 1")) {
                while (rs.next()) {
                    OffsetDateTime month = rs.getObject(1, OffsetDateTime.class);
                    System.out.println("series\t" + month.toInstant() + "\t" + rs.getLong(2));
                }
            }
        }
    }
}
