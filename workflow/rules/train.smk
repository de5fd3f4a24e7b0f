# Training targets: `snakemake --cores 2 train` (every shipped model) or train_localizer / train_regressor /
# a vessel segmentation ConvNet by its output (results/models/unetpp/weights.pt; unet for the comparison).
# They write <training.out>/<model>/{weights.pt,model_card.json}; point config `models:` there to use them.


rule train_localizer:
    """Heart localizer (three plane ConvNets) on the labelled training cohort; weights + model card."""
    input:
        training_inputs,
    output:
        weights=f"{TRAIN_OUT}/localizer/weights.pt",
        card=f"{TRAIN_OUT}/localizer/model_card.json",
    params:
        root=lambda wc: root_of(TRAIN_COHORT),
        labels=lambda wc: labels_of(TRAIN_COHORT),
        training=lambda wc: config["training"],
    threads: config["sharding"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["sharding"]["threads"],
        mem_mb=16000,
        runtime=240,
    log:
        "logs/train/localizer.log",
    benchmark:
        "benchmarks/train/localizer.tsv"
    conda:
        "../../envs/cacflow-gpu.yaml"
    script:
        "../scripts/train.py"


rule train_regressor:
    """Regression ConvNet (raw and ln(y+1) targets, the better by validation) on the training cohort."""
    input:
        training_inputs,
        localizer=f"{TRAIN_OUT}/localizer/weights.pt",
    output:
        weights=f"{TRAIN_OUT}/regressor/weights.pt",
        card=f"{TRAIN_OUT}/regressor/model_card.json",
    params:
        root=lambda wc: root_of(TRAIN_COHORT),
        labels=lambda wc: labels_of(TRAIN_COHORT),
        training=lambda wc: config["training"],
    threads: config["sharding"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["sharding"]["threads"],
        mem_mb=16000,
        runtime=480,
    log:
        "logs/train/regressor.log",
    benchmark:
        "benchmarks/train/regressor.tsv"
    conda:
        "../../envs/cacflow-gpu.yaml"
    script:
        "../scripts/train.py"


rule train_vessel:
    """Vessel-specific calcium segmentation ConvNet (arch: unetpp, or unet to compare) on the training cohort."""
    input:
        training_inputs,
        localizer=f"{TRAIN_OUT}/localizer/weights.pt",
    output:
        weights=f"{TRAIN_OUT}/{{arch}}/weights.pt",
        card=f"{TRAIN_OUT}/{{arch}}/model_card.json",
    wildcard_constraints:
        arch="unetpp|unet",
    params:
        root=lambda wc: root_of(TRAIN_COHORT),
        labels=lambda wc: labels_of(TRAIN_COHORT),
        training=lambda wc: config["training"],
    threads: config["sharding"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["sharding"]["threads"],
        mem_mb=16000,
        runtime=480,
    log:
        "logs/train/{arch}.log",
    benchmark:
        "benchmarks/train/{arch}.tsv"
    conda:
        "../../envs/cacflow-gpu.yaml"
    script:
        "../scripts/train.py"


rule train_levels:
    """Kernel-robust calcification level model (robust Agatston score) on the soft/sharp pairs of the cohort."""
    input:
        training_inputs,
        localizer=f"{TRAIN_OUT}/localizer/weights.pt",
    output:
        weights=f"{TRAIN_OUT}/levels/weights.pt",
        card=f"{TRAIN_OUT}/levels/model_card.json",
    params:
        root=lambda wc: root_of(TRAIN_COHORT),
        labels=lambda wc: labels_of(TRAIN_COHORT),
        training=lambda wc: config["training"],
    threads: config["sharding"]["threads"]
    resources:
        gpu=1,
        cpus_per_gpu=config["sharding"]["threads"],
        mem_mb=16000,
        runtime=480,
    log:
        "logs/train/levels.log",
    benchmark:
        "benchmarks/train/levels.tsv"
    conda:
        "../../envs/cacflow-gpu.yaml"
    script:
        "../scripts/train.py"


rule train:
    """Every shipped model of the training cohort (the plain U-Net comparison: `snakemake results/models/unet/weights.pt`)."""
    input:
        rules.train_localizer.output,
        rules.train_regressor.output,
        f"{TRAIN_OUT}/unetpp/weights.pt",
        rules.train_levels.output,
