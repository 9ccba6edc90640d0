package tracardi.devtools.elasticsearch;

import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.node.EmbeddedNode;
import org.elasticsearch.node.InternalSettingsPreparer;
import org.elasticsearch.node.Node;
import org.elasticsearch.transport.netty4.Netty4Plugin;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;

/**
 * Starts a single Elasticsearch node in this JVM from jars on the classpath.
 * args[0] = ES "home" directory containing config/elasticsearch.yml (and optionally config/log4j2.properties).
 */
public final class EsMain {
    public static void main(String[] args) throws Exception {
        long t0 = System.nanoTime();
        Path home = Path.of(args.length > 0 ? args[0] : ".").toAbsolutePath().normalize();
        Path config = home.resolve("config");
        Settings input = Settings.builder().put("path.home", home.toString()).build();
        Environment env = InternalSettingsPreparer.prepareEnvironment(input, Map.of(), config, () -> "node-1");
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(env.settings()));
        LogConfigurator.setClusterName(env.settings().get("cluster.name", "elasticsearch"));
        if (Files.exists(config.resolve("log4j2.properties"))) {
            LogConfigurator.configure(env, true);
        } else {
            LogConfigurator.configureWithoutConfig(env.settings());
        }
        Files.createDirectories(env.logsDir());

        Node node = new EmbeddedNode(env, List.of(Netty4Plugin.class, RootInfoPlugin.class));
        CountDownLatch stopped = new CountDownLatch(1);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
                node.awaitClose(30, java.util.concurrent.TimeUnit.SECONDS);
            } catch (Exception e) {
                e.printStackTrace();
            } finally {
                stopped.countDown();
            }
        }, "es-shutdown"));
        node.start();
        System.out.printf("EsMain: node started in %.1f s%n", (System.nanoTime() - t0) / 1e9);
        stopped.await();
    }
}
